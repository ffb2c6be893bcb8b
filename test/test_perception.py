"""Perception core: teaching, finding, persistence, and refusal of bad memories and prompts."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from isar_ros.core import inference
from isar_ros.core.backbones.base import FeatureGrid
from isar_ros.core.images import THUMBNAIL_SIDE
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel
from isar_ros.core.memory_snapshot import MemoryFormatError, MemorySnapshot, ObjectClassifier, SnapshotObject
from isar_ros.core.memory_store import load_memory
from isar_ros.core.perception import CLOSER_VIEW, Perception, PerceptionConfig, closer_view
from isar_ros.core.prompt_mask import GrabCutPredictor, Prompt, PromptError


def scene(
    objects: dict[str, tuple[int, int, int, int]], seed: int = 0, size=(240, 320)
) -> tuple[np.ndarray, dict]:
    """A textured background with textured rectangles: name -> (x, y, w, h). Returns (rgb, masks)."""
    rng = np.random.default_rng(seed)
    image = (rng.integers(90, 140, (*size, 3))).astype(np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 0)
    looks = {
        "red_stripes": ((220, 30, 30), (250, 220, 40)),
        "blue_dots": ((30, 60, 220), (240, 240, 240)),
        "green_checker": ((40, 170, 60), (20, 20, 20)),
    }
    masks = {}
    for name, (x, y, w, h) in objects.items():
        a, b = looks[name]
        patch = np.zeros((h, w, 3), np.uint8)
        patch[:] = a
        if name == "red_stripes":
            patch[::6] = b
            patch[1::6] = b
        elif name == "blue_dots":
            patch[2::7, 2::7] = b
        else:
            yy, xx = np.mgrid[0:h, 0:w]
            patch[((yy // 8 + xx // 8) % 2) == 1] = b
        image[y : y + h, x : x + w] = patch
        mask = np.zeros(size, bool)
        mask[y : y + h, x : x + w] = True
        masks[name] = mask
    return image, masks


def box_prompt(mask: np.ndarray) -> Prompt:
    ys, xs = np.nonzero(mask)
    return Prompt.from_isar((int(xs.mean()), int(ys.mean())), (xs.min(), ys.min(), xs.max(), ys.max()))


@pytest.fixture
def taught():
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    rgb, masks = scene({"red_stripes": (30, 40, 70, 60), "blue_dots": (180, 120, 80, 70)})
    frame = perception.encode(rgb)
    red = perception.teach([(frame, [box_prompt(masks["red_stripes"])])], name="red mug")
    blue = perception.teach([(frame, [box_prompt(masks["blue_dots"])])], name="blue box")
    return perception, red, blue


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_grabcut_mask_from_a_box_and_a_click():
    rgb, masks = scene({"red_stripes": (30, 40, 70, 60)})
    predictor = GrabCutPredictor()
    predictor.set_image(rgb)
    assert iou(predictor.predict(box_prompt(masks["red_stripes"])), masks["red_stripes"]) > 0.85
    click_only = Prompt(np.array([[60.0, 70.0]]), np.array([1]))
    assert iou(predictor.predict(click_only), masks["red_stripes"]) > 0.5


def test_a_click_beside_the_object_inside_its_box_keeps_the_boxed_object():
    rgb, masks = scene({"red_stripes": (100, 60, 100, 80)})
    predictor = GrabCutPredictor()
    predictor.set_image(rgb)
    # The click lands on background inside a loose box (as DAVIS libby's did): GrabCut puts the spot in the
    # background, so the click's component is its own sure-foreground disk alone.
    mask = predictor.predict(Prompt.from_isar((90, 100), (80, 45, 210, 150)))
    assert iou(mask, masks["red_stripes"]) > 0.9  # not the click's disk alone (29 px, IoU 0.0 before)


def test_the_clicked_component_is_kept_and_the_largest_too_when_the_click_grew_nothing():
    mask = np.zeros((60, 80), bool)
    mask[5:35, 5:45] = True  # the largest component
    mask[48:55, 67:74] = True  # 49 px around the click: no more than the click's disk (29 px) x 4
    kept = GrabCutPredictor._keep_prompted_component(mask, [(70, 51)], click_radius=3)
    np.testing.assert_array_equal(kept, mask)
    mask[40:58, 56:78] = True  # the click's component now 396 px: GrabCut grew the object from the click
    kept = GrabCutPredictor._keep_prompted_component(mask, [(70, 51)], click_radius=3)
    assert kept[50, 70] and not kept[10:30, 10:40].any()


def test_grabcut_colour_models_are_read_as_opencv_stores_them():
    """A 1 x 65 GrabCut model (5 weights, 5 x 3 means, 5 x 3 x 3 covariances) gives the log-likelihood of
    its mixture of Gaussians; components of weight 0 are left out."""
    from scipy.stats import multivariate_normal

    from isar_ros.core.prompt_mask import _gmm_log_likelihood

    means = np.array([[200.0, 120, 30], [30, 60, 30]])
    covariances = np.array([[[90.0, 10, 0], [10, 60, 5], [0, 5, 40]], np.diag([20.0, 30, 25])])
    model = np.zeros((1, 65))
    model[0, :2] = 0.7, 0.3
    model[0, 5:11] = means.ravel()
    model[0, 20:38] = covariances.ravel()
    model[0, 38:65] = np.eye(3).ravel().tolist() * 3  # weight-0 components' covariances: unused
    pixels = np.array([[200.0, 120, 30], [30, 60, 30], [120, 90, 30], [255, 255, 255]])
    expected = np.logaddexp(
        np.log(0.7) + multivariate_normal(means[0], covariances[0]).logpdf(pixels),
        np.log(0.3) + multivariate_normal(means[1], covariances[1]).logpdf(pixels),
    )
    np.testing.assert_allclose(_gmm_log_likelihood(model, pixels), expected, rtol=1e-9)


def test_a_mask_that_misses_most_of_its_box_is_pinned_across_it_and_one_that_crosses_it_is_kept():
    """The tight-box prior (``BOX_UNCROSSED``): GrabCut kept an object's orange head and lost its brown body
    (its colour models put brown in the background). The head misses 65 of the box's 90 rows: every missed
    row and column gets its most object-like pixel as sure foreground - on the brown body, not on the dark
    green around it - so the result crosses every line of the box. A mask that crosses its box is returned as
    it is."""
    rng = np.random.default_rng(0)
    image = np.zeros((120, 120, 3))
    image[:] = (30, 60, 30)
    image[15:40, 10:45] = (230, 120, 30)  # head
    image[40:105, 10:110] = (150, 100, 60)  # body
    small = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    box = (10, 15, 109, 104)  # drawn tight around head and body
    result = np.full((120, 120), cv2.GC_BGD, np.uint8)
    result[15:105, 10:110] = cv2.GC_PR_BGD
    result[15:40, 10:45] = cv2.GC_PR_FGD  # GrabCut's mask: the head alone
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(1)
    cv2.grabCut(small, result.copy(), None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)  # its colour models
    foreground = GrabCutPredictor()._cross_box(small, result, result == cv2.GC_PR_FGD, box, bgd, fgd)
    inside = foreground[15:105, 10:110]
    assert inside.any(axis=1).all() and inside.any(axis=0).all()
    added = foreground & ~(result == cv2.GC_PR_FGD)
    body = np.zeros_like(foreground)
    body[40:105, 10:110] = True
    assert added.any() and not (added & ~body).any()

    result[40:105, 10:110] = cv2.GC_PR_FGD  # head and body: every line of the box is crossed
    np.testing.assert_array_equal(
        GrabCutPredictor()._cross_box(small, result, result == cv2.GC_PR_FGD, box, bgd, fgd),
        result == cv2.GC_PR_FGD,
    )


def test_a_click_alone_finds_small_and_large_objects():
    """A click gives no size: the window GrabCut works in is chosen per prompt, so an object much
    larger than a fixed window (the old 20 % of the image) is taken whole, and a small one is not
    swallowed by its surroundings."""
    rgb, masks = scene({"blue_dots": (40, 40, 170, 130), "red_stripes": (250, 180, 26, 22)})
    predictor = GrabCutPredictor()
    predictor.set_image(rgb)
    for name, (x, y) in {"blue_dots": (100, 90), "red_stripes": (262, 190)}.items():
        mask = predictor.predict(Prompt(np.array([[x, y]], np.float32), np.array([1])))
        assert iou(mask, masks[name]) > 0.8, name


def test_refining_a_coarse_mask_snaps_it_to_the_objects_edges():
    """`refine: grabcut`: a found mask is patch-coarse (here a disc seen through 16 px cells, taking in
    background at its rim and missing some of its edge); refining it gives the disc's own outline.
    An empty mask stays empty; on a flat image (nothing to separate) the result stays inside the
    mask."""
    rgb, _ = scene({}, seed=3)
    disc = np.zeros(rgb.shape[:2], np.uint8)
    cv2.circle(disc, (150, 110), 45, 1, -1)
    rgb[disc > 0] = (200, 40, 40)
    disc = disc.astype(bool)
    cells = cv2.resize(disc.astype(np.float32), (20, 15), interpolation=cv2.INTER_AREA) > 0.4
    coarse = cv2.resize(cells.astype(np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST).astype(bool)
    predictor = GrabCutPredictor()
    predictor.set_image(rgb)
    refined = predictor.refine(coarse)
    assert iou(coarse, disc) < 0.9 and iou(refined, disc) > 0.95
    empty = np.zeros_like(coarse)
    assert not predictor.refine(empty).any()
    for y, x in ((0, 0), (239, 319), (120, 160)):  # one pixel, in a corner or not: a mask, no error
        dot = np.zeros_like(coarse)
        dot[y, x] = True
        assert predictor.refine(dot, cell=8.0).any()
    predictor.set_image(np.full_like(rgb, 120))
    flat = predictor.refine(coarse)
    assert flat.any() and not (flat & ~coarse).any()


def test_refine_grabcut_publishes_masks_closer_to_the_object(taught):
    perception, _, _ = taught
    rgb, masks = scene({"red_stripes": (200, 30, 80, 70)}, seed=5)
    grid = perception.encode(rgb).grid
    plain = InstanceFinder(perception.finder.model, InferenceConfig(refine="none")).find(grid, rgb)
    refined = InstanceFinder(perception.finder.model, InferenceConfig(refine="grabcut")).find(grid, rgb)
    assert "refinement" in refined.timings_ms and "refinement" not in plain.timings_ms
    assert [i.object_id for i in refined.instances] == [i.object_id for i in plain.instances] == [1]
    truth = masks["red_stripes"]
    assert iou(refined.labels == 1, truth) > max(iou(plain.labels == 1, truth), 0.9)
    (instance,) = refined.instances
    assert instance.area == (refined.labels == 1).sum()


def test_taught_objects_are_found_elsewhere_and_absent_ones_not_painted(taught):
    perception, red, blue = taught
    assert (red.object_id, blue.object_id) == (1, 2)
    assert iou(red.masks[0], scene({"red_stripes": (30, 40, 70, 60)})[1]["red_stripes"]) > 0.85
    rgb, masks = scene({"red_stripes": (200, 30, 80, 70)}, seed=5)  # moved, other background, blue box absent
    segmentation = perception.find(perception.encode(rgb))
    assert iou(segmentation.labels == 1, masks["red_stripes"]) > 0.6
    assert not (segmentation.labels == 2).any()
    (instance,) = segmentation.instances
    assert (instance.object_id, instance.name) == (1, "red mug") and 0.5 < instance.score <= 1.0
    assert instance.area == (segmentation.labels == 1).sum()
    rgb, _ = scene({"green_checker": (100, 100, 60, 60)}, seed=7)  # an untaught object only
    assert not perception.find(perception.encode(rgb)).labels.any()


def test_presence_switched_off_paints_absent_objects(taught):
    perception, _, _ = taught
    rgb, _ = scene({}, seed=5)  # neither taught object is in view
    grid = perception.encode(rgb).grid
    assert not perception.finder.find(grid, rgb).labels.any()
    without = InstanceFinder(perception.finder.model, InferenceConfig(presence=False)).find(grid, rgb)
    assert {i.object_id for i in without.instances} == {1, 2}  # both painted at their best-scoring patches


def test_one_matrix_product_equals_per_object_scores(taught):
    perception, _, _ = taught
    grid = perception.encode(scene({"red_stripes": (200, 30, 80, 70)}, seed=5)[0]).grid
    stacked = perception.finder.score(grid).numpy()
    flat = grid.features.numpy()
    for k, obj in enumerate(sorted(perception.memory.objects.values(), key=lambda o: o.object_id)):
        np.testing.assert_allclose(
            stacked[..., k], flat @ obj.classifier.weights + obj.classifier.bias, atol=1e-5
        )


@pytest.mark.parametrize("matcher", ["svm", "prototype"])
def test_presence_is_exact_for_every_object_near_its_gate_and_bounded_for_the_rest(taught, matcher):
    perception, red, _ = taught
    grid = perception.encode(scene({"red_stripes": (200, 30, 80, 70)}, seed=5)[0]).grid
    finder = InstanceFinder(perception.finder.model, InferenceConfig(matcher=matcher, temporal=False))
    scores = finder.score(grid)
    by_object = scores.numpy().reshape(-1, len(finder.model)).T
    m = finder.model.min_patches
    exact = np.array([np.sort(row)[::-1][:n].mean() for row, n in zip(by_object, m, strict=True)])
    bound = by_object.max(axis=1)
    if matcher == "prototype":
        exact = (exact - finder.model.prototype_threshold) * 10.0
        bound = (bound - finder.model.prototype_threshold) * 10.0
    for floor in (np.full(2, -np.inf), np.full(2, np.inf), exact + 1e-3):  # all exact, none, between
        logits, _, _ = finder._top_means(scores, floor)
        reached = bound >= floor
        np.testing.assert_allclose(logits[reached], exact[reached], atol=1e-4)
        np.testing.assert_allclose(logits[~reached], bound[~reached], atol=1e-4)
        assert (logits >= exact - 1e-4).all()
    _, present = finder.presence(scores, grid.features)
    assert present.tolist() == [True, False]  # the red object shows; the blue one does not


@pytest.mark.parametrize("matcher", ["svm", "prototype"])
def test_no_region_scores_above_its_objects_ceiling_so_skipping_the_check_changes_no_decision(
    taught, matcher, monkeypatch
):
    """The region check is skipped for objects whose ceiling (the best-patch mean with every score raised to
    the mask threshold) is below their threshold: no region of theirs could pass."""
    perception, _, _ = taught
    finder = InstanceFinder(perception.finder.model, InferenceConfig(matcher=matcher, temporal=False))
    tight = 0
    frames = [
        scene({"red_stripes": (200, 30, 80, 70)}, seed=5)[0],
        scene({"red_stripes": (20, 150, 30, 25), "blue_dots": (150, 40, 20, 20)}, seed=6)[0],
        scene({"green_checker": (100, 60, 90, 90)}, seed=7)[0],
        scene({"blue_dots": (10, 10, 300, 220)}, seed=8)[0],  # far larger than taught: only its cores count
    ]
    decisions = []
    for rgb in frames:
        grid = perception.encode(rgb).grid
        scores = finder.score(grid)
        _, m, ceiling = finder._top_means(scores, np.full(len(finder.model), -np.inf))
        for j in range(len(finder.model)):
            _, value, _, _ = finder._best_region(scores[..., j].numpy(), j, int(m[j]))
            assert value <= ceiling[j] + 1e-9
            tight += bool(np.isclose(value, ceiling[j]))
        decisions.append(finder.presence(scores, grid.features)[1].tolist())
    assert tight > 0  # the bound is reached where a region holds the object's best patches
    monkeypatch.setattr(inference, "CEILING_TOLERANCE", np.inf)  # never skip
    for rgb, decided in zip(frames, decisions, strict=True):
        grid = perception.encode(rgb).grid
        assert finder.presence(finder.score(grid), grid.features)[1].tolist() == decided


def far_objects(count: int, features: np.ndarray, first_id: int, seed: int = 0) -> list[SnapshotObject]:
    """Objects absent from the frame of ``features``: weights towards one of its patches, bias 2 logits
    below that patch's score (as benchmark_core's scaling memory)."""
    rng = np.random.default_rng(seed)
    flat = features.reshape(-1, features.shape[-1])
    objects = []
    for i in range(count):
        w = flat[rng.integers(len(flat))] - flat.mean(0)
        w = (w / np.linalg.norm(w) * 4.0).astype(np.float32)
        classifier = ObjectClassifier(w, float(-(flat @ w).max() - 2.0), 0.0, 0.6, w[None] / 4.0, 0.9)
        objects.append(SnapshotObject(first_id + i, f"far {i}", 1, 20, 70, classifier))
    return objects


def test_the_cascade_skips_far_objects_and_changes_no_decision(taught):
    """With many objects, those whose block bound cannot reach their gate are not scored patch by patch;
    the labels and instances are those of scoring every object, frame after frame (hysteresis and tracking
    on), and the cascade pauses where it skips too little to pay."""
    from dataclasses import replace

    perception, _, _ = taught
    frames = [
        scene({"red_stripes": (200, 30, 80, 70)}, seed=5)[0],
        scene({"red_stripes": (190, 40, 80, 70), "blue_dots": (20, 150, 40, 40)}, seed=6)[0],
        scene({"green_checker": (100, 60, 90, 90)}, seed=7)[0],
        scene({"red_stripes": (20, 150, 30, 25), "blue_dots": (150, 40, 20, 20)}, seed=8)[0],
    ]
    grids = [perception.encode(rgb).grid for rgb in frames]
    snapshot = perception.snapshot()
    far = far_objects(300, grids[0].features.numpy(), first_id=10)
    model = ObjectModel(replace(snapshot, objects=snapshot.objects + tuple(far)))
    cascade, reference = InstanceFinder(model), InstanceFinder(model)
    cascade.cascade_min_objects, reference.cascade_min_objects = 0, 10**9
    skipped, found = [], []
    for rgb, grid in zip(frames, grids, strict=True):
        a, b = cascade.find(grid, rgb), reference.find(grid, rgb)
        skipped.append(cascade.cascade_skipped)
        found.append({i.object_id for i in a.instances})
        assert reference.cascade_skipped == 0
        np.testing.assert_array_equal(a.labels, b.labels)
        assert [(i.object_id, i.box_xywh, i.area) for i in a.instances] == [
            (i.object_id, i.box_xywh, i.area) for i in b.instances
        ]  # the same objects, boxes, areas; scores to float rounding (a product over fewer rows)
        np.testing.assert_allclose([i.score for i in a.instances], [i.score for i in b.instances], atol=1e-6)
    assert 1 in found[0] and 1 in found[1]  # the taught red object is found where it shows large
    assert max(skipped) >= 250 and min(skipped) > 0
    # Look-alike objects (all near their gates on this frame): nothing to skip, so it pauses.
    near = [replace(o, object_id=20 + k) for k, o in enumerate(snapshot.objects[:1] * 300)]
    alike = InstanceFinder(ObjectModel(replace(snapshot, objects=tuple(near))))
    alike.cascade_min_objects = 0
    alike.find(grids[0], frames[0])
    assert alike.cascade_skipped == 0 and alike.cascade_pause == inference.CASCADE_PAUSE_FRAMES
    alike.find(grids[0], frames[0])
    assert alike.cascade_pause == inference.CASCADE_PAUSE_FRAMES - 1


def test_forget_and_rename(taught):
    perception, red, blue = taught
    perception.rename(blue.object_id, "blue crate")
    perception.forget(red.object_id)
    assert [(o.object_id, o.name) for o in perception.memory.objects.values()] == [(2, "blue crate")]
    rgb, masks = scene({"green_checker": (10, 10, 50, 50)}, seed=3)
    result = perception.teach([(perception.encode(rgb), [box_prompt(masks["green_checker"])])], name="green")
    assert result.object_id == 3  # ids are never reused


def test_multi_shot_adds_exemplars_to_the_same_object(taught):
    perception, red, _ = taught
    rgb, masks = scene({"red_stripes": (150, 100, 60, 50)}, seed=9)
    result = perception.teach(
        [(perception.encode(rgb), [box_prompt(masks["red_stripes"])])], object_id=red.object_id
    )
    assert result.object_id == red.object_id and perception.memory.objects[red.object_id].num_exemplars == 2


def test_an_object_taught_from_one_view_needs_a_lower_share_of_its_positive_score(taught):
    """One view's positives overstate what other views of it score: its presence threshold is
    `presence_fraction_one_view` (0.5) of its median positive logit; from the second view on,
    `presence_fraction` (0.6)."""
    perception, red, _ = taught
    config = perception.config.memory
    assert config.presence_fraction_one_view < config.presence_fraction

    def threshold_share() -> float:
        taught_object = perception.memory.objects[red.object_id]
        c = taught_object.classifier
        median = float(np.median(taught_object.exemplars.positives @ c.weights + c.bias))
        return float(np.log(c.presence_threshold / (1 - c.presence_threshold))) / median

    assert threshold_share() == pytest.approx(config.presence_fraction_one_view, rel=1e-4)
    rgb, masks = scene({"red_stripes": (150, 100, 60, 50)}, seed=9)
    perception.teach([(perception.encode(rgb), [box_prompt(masks["red_stripes"])])], object_id=red.object_id)
    assert threshold_share() == pytest.approx(config.presence_fraction, rel=1e-4)


def test_what_an_object_keeps_for_refits_is_bounded():
    """Regression: every autosave wrote 12000 background patches per object (59 MB for 10 objects)."""
    config = PerceptionConfig(mask_predictor="grabcut", device="cpu")
    config.memory.max_object_negatives, config.memory.max_positives = 500, 200
    perception = Perception(config)
    object_id = 0
    for seed in range(4):  # multi-shot: the exemplars add up, the kept patches must not
        rgb, masks = scene({"red_stripes": (30 + 20 * seed, 40, 90, 80)}, seed=seed, size=(480, 640))
        teaching = [(perception.encode(rgb), [box_prompt(masks["red_stripes"])])]
        object_id = perception.teach(teaching, name="red", object_id=object_id).object_id
    taught = perception.memory.objects[object_id]
    assert taught.num_exemplars == 4
    assert (
        len(taught.exemplars.negatives) == 500 and len(taught.exemplars.positives) == 200
    )  # 4 x 4800 patches, x3 with the variants


def test_save_load_gives_identical_predictions(taught, tmp_path):
    perception, _, _ = taught
    perception.save(tmp_path / "memory")
    restored = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    restored.load(tmp_path / "memory")
    rgb, _ = scene({"red_stripes": (200, 30, 80, 70), "blue_dots": (20, 140, 60, 60)}, seed=4)
    a, b = perception.find(perception.encode(rgb)), restored.find(restored.encode(rgb))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert [(i.object_id, i.name, i.score, i.box_xywh) for i in a.instances] == [
        (i.object_id, i.name, i.score, i.box_xywh) for i in b.instances
    ]
    assert (
        restored.memory.next_id == perception.memory.next_id
        and restored.memory.version == perception.memory.version
    )


def test_a_memory_saved_before_the_appearance_check_loads_with_it_off(taught, tmp_path):
    perception, red, _ = taught
    folder = perception.save(tmp_path / "memory")
    manifest_path = next(folder.glob("manifest*.json")) if folder.is_dir() else folder
    manifest = json.loads(manifest_path.read_text())
    arrays_path = manifest_path.parent / manifest["arrays"]
    with np.load(arrays_path) as stored:
        arrays = {k: stored[k] for k in stored.files if not k.endswith(("_appearance", "_closer"))}
    np.savez(arrays_path, **arrays)
    for entry in manifest["objects"]:
        del entry["appearance_threshold"]
    manifest["arrays_sha256"] = hashlib.sha256(arrays_path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    old = load_memory(tmp_path / "memory")
    assert old.objects[red.object_id].classifier.appearance.size == 0
    assert old.objects[red.object_id].exemplars.closer is None  # saved before the closer view existed
    model = ObjectModel(old.snapshot())
    assert (model.appearance_threshold < -1).all()  # every region passes: the check is off


def test_the_closer_view_is_the_window_around_the_mask_brought_to_the_frame_size():
    rows, cols = np.mgrid[0:100, 0:200]
    rgb = np.stack([rows, cols, np.zeros_like(rows)], axis=2).astype(np.uint8)  # each pixel names its place
    mask = np.zeros((100, 200), bool)
    mask[45:55, 90:110] = True  # centred on (50, 100)
    closer, closer_mask = closer_view(rgb, mask, factor=2.0)
    assert closer.shape == rgb.shape and closer_mask.shape == mask.shape
    assert tuple(closer[0, 0, :2]) == (25, 50)  # the 50 x 100 window from (25, 50), twice as large
    ys, xs = np.nonzero(closer_mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (40, 59, 80, 119)  # the mask twice as large, centred
    corner = np.zeros((100, 200), bool)
    corner[:4, :6] = True  # at the image's corner: the window is moved inside the frame
    closer, closer_mask = closer_view(rgb, corner, factor=2.0)
    assert tuple(closer[0, 0, :2]) == (0, 0) and closer_mask[:8, :12].all() and closer_mask.sum() == 8 * 12


def test_a_mask_in_parts_at_opposite_corners_is_taught_without_a_closer_view():
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    rgb, masks = scene({"red_stripes": (0, 0, 40, 30), "blue_dots": (280, 210, 40, 30)})
    parts = masks["red_stripes"] | masks["blue_dots"]
    assert not closer_view(rgb, parts)[1].any()  # the window around the box's centre misses both parts
    taught = perception.teach(
        [(perception.encode(rgb), [box_prompt(parts)])], name="two parts", masks=[parts]
    )
    assert perception.memory.objects[taught.object_id].exemplars.closer is None
    assert perception.objects()[0].name == "two parts"


def test_an_object_taught_from_one_view_also_looks_like_that_view_closer_until_it_has_more(taught, tmp_path):
    perception, red, blue = taught
    data = perception.memory.objects[red.object_id].exemplars
    assert data.closer is not None and data.closer.dtype == np.float32
    plain = data.positives.mean(axis=0)
    plain /= np.linalg.norm(plain)
    blended = plain + data.closer / np.linalg.norm(data.closer)
    appearance = perception.memory.objects[red.object_id].classifier.appearance
    np.testing.assert_allclose(appearance, blended / np.linalg.norm(blended), atol=1e-6)
    assert float(appearance @ plain) < 1 - 1e-4  # the closer view moved it
    perception.save(tmp_path / "memory")
    restored = load_memory(tmp_path / "memory")
    np.testing.assert_array_equal(restored.objects[red.object_id].exemplars.closer, data.closer)
    rgb, masks = scene({"red_stripes": (150, 100, 60, 50)}, seed=9)
    perception.teach([(perception.encode(rgb), [box_prompt(masks["red_stripes"])])], object_id=red.object_id)
    data = perception.memory.objects[red.object_id].exemplars
    assert data.closer is None  # two views now: they speak for themselves
    plain = data.positives.mean(axis=0)
    np.testing.assert_allclose(
        perception.memory.objects[red.object_id].classifier.appearance,
        plain / np.linalg.norm(plain),
        atol=1e-6,
    )
    assert perception.memory.objects[blue.object_id].exemplars.closer is not None
    assert CLOSER_VIEW > 1


def test_thumbnails_are_crops_around_the_mask_kept_per_view_and_saved(taught, tmp_path):
    perception, red, blue = taught
    (crop,) = perception.thumbnails(red.object_id)
    assert crop.dtype == np.uint8 and crop.ndim == 3 and max(crop.shape[:2]) <= THUMBNAIL_SIDE
    assert crop[..., 0].mean() > crop[..., 2].mean() + 40  # the red object, not the grey background
    rgb, masks = scene({"red_stripes": (150, 100, 60, 50)}, seed=9)
    perception.teach([(perception.encode(rgb), [box_prompt(masks["red_stripes"])])], object_id=red.object_id)
    assert len(perception.thumbnails(red.object_id)) == 2
    perception.save(tmp_path / "memory")
    restored = load_memory(tmp_path / "memory")
    for object_id in (red.object_id, blue.object_id):
        saved = restored.objects[object_id].exemplars.thumbnails
        assert len(saved) == len(perception.thumbnails(object_id))
        for a, b in zip(saved, perception.thumbnails(object_id), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_memory_with_a_bad_thumbnail_is_refused_and_one_without_thumbnails_loads(taught, tmp_path):
    perception, red, _ = taught
    folder = perception.save(tmp_path / "memory").parent
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays_path = folder / manifest["arrays"]

    def rewrite(change):
        with np.load(arrays_path) as stored:
            arrays = {k: stored[k] for k in stored.files}
        entries = change(arrays)
        np.savez(arrays_path, **arrays)
        edited = dict(
            manifest, objects=entries, arrays_sha256=hashlib.sha256(arrays_path.read_bytes()).hexdigest()
        )
        (folder / "manifest.json").write_text(json.dumps(edited))

    key = f"object_{red.object_id}_thumbnail_0"
    rewrite(lambda arrays: arrays.update({key: np.zeros((4000, 3, 3), np.uint8)}) or manifest["objects"])
    with pytest.raises(MemoryFormatError, match="thumbnail_0"):
        load_memory(folder)

    def drop(arrays):
        for name in [k for k in arrays if "_thumbnail_" in k]:
            del arrays[name]
        return [{k: v for k, v in e.items() if k != "thumbnails"} for e in manifest["objects"]]

    rewrite(drop)
    assert load_memory(folder).objects[red.object_id].exemplars.thumbnails == []


def test_a_region_that_scores_high_but_does_not_look_like_the_object_is_not_reported():
    """Known answer: the classifier fires on feature axis 0; the object looks like axes 0 and 1 (cosine
    threshold 0.9). A region made of axes 0 and 2 scores as high, but its mean has cosine 0.5: absent."""
    dim = 4
    weights = np.array([4.0, 0.0, 0.0, 0.0], np.float32)
    classifier = ObjectClassifier(
        weights,
        -1.0,
        0.0,
        0.6,
        np.eye(dim, dtype=np.float32)[:1],
        0.5,
        appearance=(np.array([1, 1, 0, 0], np.float32) / np.sqrt(2)).astype(np.float32),
        appearance_threshold=0.9,
    )
    snapshot = MemorySnapshot(1, "test", dim, (SnapshotObject(1, "mug", 1, 4, 16, classifier),))
    finder = InstanceFinder(ObjectModel(snapshot), InferenceConfig(temporal=False, edge_aware=False))

    def frame(second_axis: int) -> FeatureGrid:
        features = np.zeros((12, 16, dim), np.float32)
        features[..., 3] = 1.0  # background: scores -1
        features[4:8, 5:9] = 0.0
        features[4:8, 5:9, [0, second_axis]] = 1 / np.sqrt(2)
        return FeatureGrid(torch.from_numpy(features), (128, 96))

    assert [i.name for i in finder.find(frame(1)).instances] == ["mug"]
    assert finder.find(frame(2)).instances == []


def _axis_zero_mug(dim: int) -> MemorySnapshot:
    """One object, "mug", taught on 16 patches: its classifier fires on feature axis 0 (score 4 x value - 1,
    mask threshold 0, presence logit 0.4), it looks like axis 0 (appearance threshold 0.5)."""
    classifier = ObjectClassifier(
        np.array([4.0] + [0.0] * (dim - 1), np.float32),
        -1.0,
        0.0,
        float(1 / (1 + np.exp(-0.4))),
        np.eye(dim, dtype=np.float32)[:1],
        0.5,
        appearance=np.eye(dim, dtype=np.float32)[0],
        appearance_threshold=0.5,
    )
    return MemorySnapshot(1, "test", dim, (SnapshotObject(1, "mug", 1, 4, 16, classifier),))


def test_an_object_run_into_a_surface_of_its_colours_is_found_by_its_core_and_the_surface_alone_is_not():
    """Known answer: the classifier fires on feature axis 0 (score 4 x value - 1, presence logit 0.4); the
    object was taught on 16 patches, so a region of more than 64 (``max_area_factor`` 4) is too large. A
    4 x 4 object scoring 3 joined to a 10 x 16 surface scoring 0.2 (above the mask threshold, below the
    presence logit) is one region of 168 patches: its core is the object. The surface alone has no core,
    and a region too large even at the core level stays refused. A carved core must look like the object
    more closely than a region standing alone (appearance threshold 0.5 -> 0.5 + 0.7 x 0.5 = 0.85): an
    object whose mean feature has cosine 0.7 with its appearance passes alone and fails carved."""
    dim = 3
    snapshot = _axis_zero_mug(dim)
    config = InferenceConfig(temporal=False, edge_aware=False, track=False, refine="none")
    finder = InstanceFinder(ObjectModel(snapshot), config)
    assert inference.CARVED_APPEARANCE == 0.7

    def frame(surface: float, object_value: float | None, other: float = 0.0, gap: int = 0) -> FeatureGrid:
        features = np.zeros((12, 16, dim), np.float32)
        features[..., 2] = 1.0  # background: scores -1
        features[2 + gap : 12, :, 2] = 0.0
        features[2 + gap : 12, :, 0] = surface  # score 4 x surface - 1
        if object_value is not None:
            features[0:4, 6:10] = (object_value, 0.0, other)
        return FeatureGrid(torch.from_numpy(features), (128, 96))

    found = finder.find(frame(0.3, 1.0))  # the object (score 3) on the surface (score 0.2)
    assert [i.name for i in found.instances] == ["mug"]
    ys, xs = np.nonzero(found.labels == 1)
    assert ys.max() < 40 and xs.min() >= 40 and xs.max() < 88  # its 4 x 4 patches (8 px), not the surface
    assert finder.find(frame(0.3, None)).instances == []  # the surface alone
    assert finder.find(frame(1.0, 1.0)).instances == []  # all of it scores like the object: a wall, refused
    unlike = 1.0 / np.tan(np.arccos(0.7))  # axis 2 share giving cosine 0.7 with the appearance
    assert [i.name for i in finder.find(frame(0.3, 1.0, unlike, gap=3)).instances] == ["mug"]  # alone
    assert finder.find(frame(0.3, 1.0, unlike)).instances == []  # carved out of the surface


def test_an_object_seen_much_closer_where_it_was_just_found_is_kept_whole_and_a_look_alike_wall_is_not():
    """Known answer: the classifier fires on feature axis 0 (score 4 x value - 1, presence logit 0.4); the
    object was taught on 16 patches, so a region of more than 64 (``max_area_factor`` 4) is too large, and
    one that scores like the object throughout has no core small enough: refused. Found as 4 x 4 patches,
    the object is then seen as 9 x 10 (90 patches) over the same place: tracking expects it there, and the
    whole region looks like the object as closely as a carved core must (cosine 1 >= 0.85): the object seen
    closer, painted whole. Without tracking, or where the region is less like the object (cosine 0.7), it
    is refused as before, and so is a wall that scores and looks like the object (96 patches) away from
    where the object was found."""
    dim = 3
    snapshot = _axis_zero_mug(dim)
    config = InferenceConfig(temporal=False, edge_aware=False, track=True, refine="none")
    unlike = 1.0 / np.tan(np.arccos(0.7))  # axis 2 share giving cosine 0.7 with the appearance

    def frame(*parts: tuple[slice, slice, float]) -> FeatureGrid:
        features = np.zeros((12, 16, dim), np.float32)
        features[..., 1] = 1.0  # background: scores -1
        for rows, cols, other in parts:
            features[rows, cols] = (1.0, 0.0, other)
        return FeatureGrid(torch.from_numpy(features), (128, 96))  # 8 px patches

    def painted(found) -> np.ndarray:
        return found.labels[4::8, 4::8] == 1  # each patch's centre pixel

    small = frame((slice(0, 4), slice(6, 10), 0.0))
    closer = frame((slice(0, 9), slice(3, 13), 0.0))
    finder = InstanceFinder(ObjectModel(snapshot), config)
    assert painted(finder.find(small))[0:4, 6:10].all()
    found = painted(finder.find(closer))
    assert found[0:9, 3:13].all() and found.sum() == 90

    finder.reset()
    finder.find(small)
    assert finder.find(frame((slice(0, 9), slice(3, 13), unlike))).instances == []  # not like it enough

    untracked = InstanceFinder(
        ObjectModel(snapshot), InferenceConfig(temporal=False, edge_aware=False, track=False, refine="none")
    )
    untracked.find(small)
    assert untracked.find(closer).instances == []  # nothing says it is the object seen closer

    finder.reset()
    finder.find(small)
    assert finder.find(frame((slice(6, 12), slice(0, 16), 0.0))).instances == []  # a wall away from it


def test_a_followed_look_alike_gives_way_when_the_object_itself_comes_into_view():
    """Known answer: the classifier fires on feature axis 0 (score 4 x value - 1, presence logit 0.4; tracking
    moves it to 0.3 at the expected place and 0.5 elsewhere; a view is sure from 0.5). A look-alike (score
    1, sure) is found and followed; in the next frame it scores 0.34 (passes at its place, not sure) while
    the object shows elsewhere (score 3, cosine 1 with its appearance against the look-alike's 0.74): the
    object is painted, not the look-alike. The place holds when its view is sure (score 1), and when the
    region elsewhere looks less like the object than the place's (cosine 0.89 against 1)."""
    dim = 3
    snapshot = _axis_zero_mug(dim)
    config = InferenceConfig(temporal=False, edge_aware=False, track=True, refine="none")
    place, elsewhere = (slice(0, 4), slice(0, 4)), (slice(6, 10), slice(10, 14))

    def frame(*parts: tuple[tuple[slice, slice], float, float]) -> FeatureGrid:
        features = np.zeros((12, 16, dim), np.float32)
        features[..., 1] = 1.0  # background: scores -1
        for (rows, cols), value, other in parts:
            features[rows, cols] = (value, 0.0, other)
        return FeatureGrid(torch.from_numpy(features), (128, 96))  # 8 px patches

    def painted_after(look_alike: FeatureGrid, then: FeatureGrid) -> tuple[bool, bool]:
        finder = InstanceFinder(ObjectModel(snapshot), config)
        assert finder.find(look_alike).instances  # found surely: tracking follows it
        labels = finder.find(then).labels[4::8, 4::8] == 1  # each patch's centre pixel
        return bool(labels[place].all()), bool(labels[elsewhere].all())

    followed = frame((place, 0.5, 0.3))
    object_arrives = frame((place, 0.335, 0.3), (elsewhere, 1.0, 0.0))
    assert painted_after(followed, object_arrives) == (False, True)
    assert painted_after(followed, frame((place, 0.5, 0.3), (elsewhere, 1.0, 0.0))) == (True, False)  # sure
    assert painted_after(frame((place, 0.5, 0.0)), frame((place, 0.335, 0.0), (elsewhere, 1.0, 0.5))) == (
        True,
        False,
    )  # the place's view looks more like the object


def test_one_instance_per_frame_its_parts_split_by_an_occluder_are_painted_a_look_alike_elsewhere_is_not(
    monkeypatch,
):
    """Known answer: the classifier fires on feature axis 0 (score 4 x value - 1). The object is an 8 x 8
    region scoring 3 (the region presence chooses: the largest sum above the mask threshold), a 2 x 8 part
    of it one patch row below (an occluder between), and a 4 x 4 look-alike scoring 1.4 four patches to its
    right: every region passes ``min_component_fraction`` and the area limit. ``PART_REACH`` 0.25 of the
    chosen region's size (sqrt 64 = 8 patches) is 2 patches: the part is painted, the look-alike is not;
    with a reach across the frame both are (as before the rule)."""
    dim = 2
    classifier = ObjectClassifier(
        np.array([4.0, 0.0], np.float32),
        -1.0,
        0.0,
        float(1 / (1 + np.exp(-0.4))),
        np.eye(dim, dtype=np.float32)[:1],
        0.5,
        appearance=np.array([1, 0], np.float32),
        appearance_threshold=0.5,
    )
    snapshot = MemorySnapshot(1, "test", dim, (SnapshotObject(1, "mug", 1, 4, 64, classifier),))
    finder = InstanceFinder(
        ObjectModel(snapshot), InferenceConfig(temporal=False, edge_aware=False, track=False, refine="none")
    )
    features = np.zeros((12, 16, dim), np.float32)
    features[..., 1] = 1.0  # background: scores -1
    features[0:8, 0:8] = (1.0, 0.0)  # the object
    features[9:11, 0:8] = (1.0, 0.0)  # its part below the occluder (row 8)
    features[0:4, 12:16] = (0.6, 0.0)  # the look-alike
    grid = FeatureGrid(torch.from_numpy(features), (128, 96))  # 8 px patches

    def painted(found):
        patches = found.labels[4::8, 4::8] == 1  # each patch's centre pixel
        return patches[0:8, 0:8].all(), patches[9:11, 0:8].all(), patches[0:4, 12:16].any()

    assert inference.PART_REACH == 0.25
    assert painted(finder.find(grid)) == (True, True, False)
    monkeypatch.setattr(inference, "PART_REACH", 4.0)
    assert painted(finder.find(grid)) == (True, True, True)


def test_a_teach_from_many_frames_gets_the_photometric_variants_in_all_not_per_frame(monkeypatch):
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    frames = []
    for seed in range(4):
        rgb, masks = scene({"red_stripes": (30 + 10 * seed, 40, 70, 60)}, seed=seed)
        frames.append((perception.encode(rgb), [box_prompt(masks["red_stripes"])]))
    extracted = []
    extract = perception.backbone.extract
    monkeypatch.setattr(perception.backbone, "extract", lambda rgb: extracted.append(rgb) or extract(rgb))
    perception.teach(frames, name="red mug")
    assert len(extracted) == perception.config.augmentations == 2
    extracted.clear()
    perception.teach(frames[:1], name="red mug")  # one frame: its two variants, as always
    assert len(extracted) == 2
    assert perception.objects()[0].num_exemplars == 5


def test_truncated_or_edited_manifest_is_refused_and_the_loaded_memory_stays(taught, tmp_path):
    perception, _, _ = taught
    directory = tmp_path / "memory"
    perception.save(directory)
    before = perception.memory
    manifest = directory / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(MemoryFormatError, match="unreadable or truncated manifest"):
        perception.load(directory)
    assert perception.memory is before and len(perception.memory.objects) == 2
    edited = json.loads(text)
    edited["objects"][0]["bias"] = "nan"
    manifest.write_text(json.dumps(edited))
    with pytest.raises(MemoryFormatError, match="'bias' must be a finite number"):
        perception.load(directory)
    edited = json.loads(text)
    edited["arrays"] = "../../etc/passwd"
    manifest.write_text(json.dumps(edited))
    with pytest.raises(MemoryFormatError, match="is not of the form arrays-NNNNNN-<checksum>.npz"):
        perception.load(directory)
    manifest.write_text(text)
    arrays = next(directory.glob("arrays-*.npz"))
    arrays.write_bytes(arrays.read_bytes()[:-10])
    with pytest.raises(MemoryFormatError, match="does not match the checksum"):
        perception.load(directory)
    assert perception.memory is before


def test_a_save_interrupted_at_any_step_leaves_the_previous_or_the_new_memory_whole(
    taught, tmp_path, monkeypatch
):
    """A crash before each file-system step of a save (fsync, rename, unlink), in turn.

    Regression: two different memories with the same version number (one ~/load-ed from elsewhere)
    once wrote the same arrays file name, so a crash between the arrays file and the manifest left
    the old manifest naming new arrays. ``new`` below has the same version as the saved one.
    """
    import os

    import isar_ros.core.memory_store as memory_module

    perception, _, _ = taught
    new = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    rgb, masks = scene({"green_checker": (60, 60, 70, 70)}, seed=3)
    frame = new.encode(rgb)
    new.teach([(frame, [box_prompt(masks["green_checker"])])], name="green")
    new.teach([(frame, [box_prompt(masks["green_checker"])])], name="green again")
    assert new.memory.version == perception.memory.version
    steps = []
    real = {"replace": os.replace, "fsync": os.fsync, "unlink": Path.unlink}

    def step(name, crash_at):
        def call(*args, **kwargs):
            steps.append(args[0] if name != "fsync" else name)
            if len(steps) == crash_at:
                raise KeyboardInterrupt(f"killed before step {crash_at}: {name}")
            return real[name](*args, **kwargs)

        return call

    crash_at = 1
    while True:
        folder = tmp_path / f"crash{crash_at}"
        perception.save(folder)
        steps.clear()
        with monkeypatch.context() as patch:
            patch.setattr(memory_module.os, "replace", step("replace", crash_at))
            patch.setattr(memory_module.os, "fsync", step("fsync", crash_at))
            patch.setattr(memory_module.Path, "unlink", step("unlink", crash_at))
            try:
                new.save(folder)
                finished = True
            except KeyboardInterrupt:
                finished = False
        manifest_replaced = any(
            str(s).endswith(".tmp") and "manifest" in str(s) for s in steps[: crash_at - 1]
        )
        names = {o.name for o in load_memory(folder).objects.values()}
        assert names == (
            {"green", "green again"} if manifest_replaced or finished else {"red mug", "blue box"}
        ), steps
        if finished:
            break
        crash_at += 1
    assert (
        crash_at >= 7
    )  # arrays fsync and rename, folder fsync, manifest fsync and rename, folder fsync, old arrays removed


def test_memory_from_another_backbone_is_refused(taught, tmp_path):
    perception, _, _ = taught
    perception.save(tmp_path / "memory")
    with pytest.raises(
        MemoryFormatError, match="was built with backbone 'handcrafted-v3.*but 'dinov2_vits14' is running"
    ):
        load_memory(tmp_path / "memory", backbone_id="dinov2_vits14")


def test_pickled_arrays_are_never_loaded(taught, tmp_path):
    perception, _, _ = taught
    directory = tmp_path / "memory"
    perception.save(directory)
    arrays = next(directory.glob("arrays-*.npz"))
    with np.load(arrays) as data:
        content = {k: data[k] for k in data.files}
    content["background"] = np.array([object()], dtype=object)  # would need pickle to read
    np.savez(arrays, **content)
    manifest = json.loads((directory / "manifest.json").read_text())
    import hashlib

    manifest["arrays_sha256"] = hashlib.sha256(arrays.read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MemoryFormatError, match="refused"):
        load_memory(directory)


@pytest.mark.parametrize(
    "prompt,message",
    [
        (Prompt(np.array([[500.0, 10.0]]), np.array([1])), r"point \(500, 10\) is outside the 320x240 image"),
        (Prompt(box_xyxy=np.array([50.0, 50.0, 50.0, 80.0])), "is empty"),
        (Prompt(np.array([[10.0, 10.0]]), np.array([0])), "neither a positive point nor a box"),
        (Prompt(np.array([[np.nan, 10.0]]), np.array([1])), "NaN or infinite"),
        (Prompt(np.array([[10.0, 10.0]]), np.array([1, 0])), "1 points but 2 labels"),
    ],
)
def test_bad_prompts_are_refused_with_a_reason_and_nothing_is_taught(taught, prompt, message):
    perception, _, _ = taught
    frame = perception.encode(scene({})[0])
    version = perception.memory.version
    with pytest.raises(PromptError, match=message):
        perception.teach([(frame, [prompt])], name="x")
    assert perception.memory.version == version and len(perception.memory.objects) == 2


def test_prototype_matcher_finds_the_taught_object(taught):
    perception, _, _ = taught
    rgb, masks = scene({"red_stripes": (200, 30, 80, 70)}, seed=5)
    finder = InstanceFinder(perception.finder.model, InferenceConfig(matcher="prototype"))
    segmentation = finder.find(perception.encode(rgb).grid, rgb)
    assert iou(segmentation.labels == 1, masks["red_stripes"]) > 0.5
    assert not (segmentation.labels == 2).any()


def test_object_model_is_built_on_the_inference_device(taught):
    perception, _, _ = taught
    model = ObjectModel(perception.snapshot(), "cpu")
    assert model.weights.device == torch.device("cpu")
    assert model.weights.shape == (2, perception.backbone.feature_dim)


def test_an_instance_box_is_the_tight_box_of_exactly_its_published_pixels(taught):
    """One instance per object, however many regions its mask has; its box covers exactly those pixels."""
    perception, red, _ = taught
    rgb, _ = scene({"red_stripes": (20, 30, 60, 50), "blue_dots": (180, 120, 80, 70)}, seed=11)
    segmentation = perception.find(perception.encode(rgb))
    assert segmentation.instances
    for instance in segmentation.instances:
        ys, xs = np.nonzero(segmentation.labels == instance.object_id)
        x, y, w, h = instance.box_xywh
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert instance.area == len(xs)
    assert len({i.object_id for i in segmentation.instances}) == len(segmentation.instances)


def test_masks_made_in_threads_beside_the_backbone_teach_exactly_what_one_at_a_time_does(monkeypatch):
    images = []
    for seed in range(4):
        rgb, masks = scene({"red_stripes": (30 + 10 * seed, 40, 70, 60)}, seed=seed)
        images.append((rgb, [box_prompt(masks["red_stripes"])]))
    used: list[GrabCutPredictor] = []
    predict = GrabCutPredictor.predict
    monkeypatch.setattr(
        GrabCutPredictor, "predict", lambda self, prompt: used.append(self) or predict(self, prompt)
    )
    taught = {}
    for threads in (1, 2):
        used.clear()
        config = PerceptionConfig(mask_predictor="grabcut", device="cpu", teach_threads=threads)
        perception = Perception(config)
        result = perception.teach_images(images, name="red mug")
        # One at a time: the perception's own predictor; in threads: each thread's own copy.
        assert len(used) == 4 and (perception.mask_predictor in used) == (threads == 1)
        taught[threads] = (result.masks, perception.objects()[0].classifier)
    for a, b in zip(taught[1][0], taught[2][0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(taught[1][1].weights, taught[2][1].weights)
    assert taught[1][1].presence_threshold == taught[2][1].presence_threshold
    # teach() on frames encoded first gives the same object as teach_images().
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    perception.teach([(perception.encode(rgb), prompts) for rgb, prompts in images], name="red mug")
    np.testing.assert_array_equal(perception.objects()[0].classifier.weights, taught[2][1].weights)


def test_a_bad_prompt_on_any_frame_of_a_threaded_teach_is_refused_before_any_work(taught):
    perception, _, _ = taught
    rgb, masks = scene({"red_stripes": (30, 40, 70, 60)})
    version, encoded = perception.memory.version, []
    encode = perception.encode
    perception.encode = lambda image: encoded.append(image) or encode(image)
    bad = Prompt(np.array([[500.0, 10.0]]), np.array([1]))
    with pytest.raises(PromptError, match="outside the 320x240 image"):
        perception.teach_images([(rgb, [box_prompt(masks["red_stripes"])]), (rgb, [bad])], name="x")
    assert encoded == [] and perception.memory.version == version and len(perception.memory.objects) == 2


def test_cell_histograms_are_the_per_pixel_histograms_averaged_over_each_cell():
    """The fast path (sums of each pixel's few non-zero bins) against the definition, on pixels that
    reach every edge case: black, white, grey, saturated colours outside the chromaticity range, flat
    regions (no gradient) and edges in every direction."""
    from isar_ros.core.backbones.handcrafted import HandcraftedBackbone

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 72, 3)).astype(np.uint8)
    image[:8] = 0
    image[8:16] = 255
    image[16:24] = 128
    image[24:28, :, :] = (255, 0, 0)
    image[28:32, :, :] = (0, 0, 255)
    image[32:40] = cv2.GaussianBlur(image[32:40], (5, 5), 0)
    for backbone in (HandcraftedBackbone(), HandcraftedBackbone(chroma_bins=5, lightness_bins=1)):
        for cell in (2, 4, 6):
            expected = backbone.pixel_histograms(image).reshape(48 // cell, cell, 72 // cell, cell, -1)
            np.testing.assert_allclose(
                backbone.cell_histograms(image, cell), expected.mean(axis=(1, 3)), rtol=0, atol=1e-6
            )


def test_the_memory_draws_the_same_samples_whatever_the_last_bits_of_the_features():
    """The draws are seeded by the mask: features that differ only by rounding (another backbone build,
    another CPU) keep the same negatives, so the classifier moves by the rounding, not by a redraw."""
    from isar_ros.core.memory import InstanceMemory, MemoryConfig

    rng = np.random.default_rng(0)
    features = rng.random((60, 80, 16), dtype=np.float32)
    mask = np.zeros((480, 640), bool)
    mask[100:300, 200:400] = True
    config = MemoryConfig(max_object_negatives=1000, max_negatives=800)
    kept = []
    for nudge in (0.0, 1e-6):
        memory = InstanceMemory("test", 16, config)
        object_id = memory.teach([(features + nudge, mask), (features[::-1] + nudge, mask)], name="box")
        kept.append(memory.objects[object_id])
    np.testing.assert_allclose(kept[0].exemplars.negatives, kept[1].exemplars.negatives - 1e-6, atol=1e-6)
    np.testing.assert_allclose(kept[0].classifier.weights, kept[1].classifier.weights, atol=1e-3)


def test_the_guided_filter_on_a_window_equals_the_whole_image_filter_inside_it():
    """Masks are filtered only around each object's kept patches: within the window, two radii from its
    edges (and right up to the image's own edges), the values are those of filtering the whole image."""
    from isar_ros.core.inference import GuideImage

    rng = np.random.default_rng(1)
    guide = GuideImage(cv2.GaussianBlur(rng.random((120, 160), dtype=np.float32), (5, 5), 0), radius=4)
    source = cv2.resize(rng.standard_normal((15, 20)).astype(np.float32), (160, 120))
    whole = guide.filter(source, eps=1e-3)
    for window, inside in (
        ((slice(30, 90), slice(40, 130)), (slice(38, 82), slice(48, 122))),
        ((slice(0, 50), slice(100, 160)), (slice(0, 42), slice(108, 160))),  # touches the image's corner
    ):
        part = guide.filter(source[window], eps=1e-3, window=window)
        inner = tuple(slice(i.start - w.start, i.stop - w.start) for i, w in zip(inside, window, strict=True))
        np.testing.assert_allclose(part[inner], whole[inside], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "image_shape, grid_shape", [((480, 640), (60, 80)), ((120, 160), (15, 20)), ((360, 640), (60, 106))]
)
def test_a_margin_map_upsampled_in_a_window_equals_the_whole_image_resize_there(image_shape, grid_shape):
    """Only the cells under a window (and one more around) are resized when the image is a whole number of
    pixels per cell; otherwise the whole map is. Either way the window's values are bit-identical."""
    from isar_ros.core.inference import _upsampled_window

    rng = np.random.default_rng(2)
    height, width = image_shape
    for _ in range(50):
        cells = rng.standard_normal(grid_shape).astype(np.float32)
        y0, x0 = int(rng.integers(0, height - 1)), int(rng.integers(0, width - 1))
        window = (
            slice(y0, int(rng.integers(y0 + 1, height + 1))),
            slice(x0, int(rng.integers(x0 + 1, width + 1))),
        )
        whole = cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(_upsampled_window(cells, image_shape, window), whole[window])


def test_the_overlay_draws_each_object_in_its_box_exactly_as_over_the_whole_image():
    """The overlay works inside each object's box; the picture equals drawing every object over the whole
    image (tint, outline, name), for objects that overlap each other's outlines and scattered pixels."""
    from isar_ros.core.visualize import object_color, overlay

    def whole_image(rgb, labels, names, alpha=0.5):
        out = rgb.copy()
        for object_id in [int(i) for i in np.unique(labels) if i != 0]:
            mask = labels == object_id
            color = np.array(object_color(object_id), np.float32)
            out[mask] = (out[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 2)
            ys, xs = np.nonzero(mask)
            position = (int(xs.min()), max(int(ys.min()) - 4, 12))
            cv2.putText(
                out, names[object_id], position, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255,) * 3, 1, cv2.LINE_AA
            )
        return out

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    for _ in range(5):
        labels = np.zeros((120, 160), np.uint16)
        for object_id in rng.choice(np.arange(1, 300), 4, replace=False):
            centre = tuple(int(v) for v in rng.integers(0, 160, 2))
            axes = tuple(int(v) for v in rng.integers(3, 50, 2))
            cv2.ellipse(labels, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(object_id), -1)
        labels[rng.random(labels.shape) < 0.002] = 7
        names = {int(i): f"object {i}" for i in np.unique(labels)}
        np.testing.assert_array_equal(overlay(rgb, labels, names), whole_image(rgb, labels, names))


def test_torch_threads_are_divided_between_the_workers_only_for_the_hand_crafted_backbone_on_a_cpu():
    from isar_ros.core.backbones.factory import intra_op_threads

    assert intra_op_threads(0, "handcrafted", "cpu", workers=2, cores=2) == 1
    assert intra_op_threads(0, "handcrafted", "cpu", workers=2, cores=8) == 4
    assert intra_op_threads(0, "handcrafted", "cpu", workers=2, cores=1) == 1
    assert intra_op_threads(0, "handcrafted", "cpu", workers=1, cores=8) == 0  # one worker: torch's default
    assert intra_op_threads(0, "dinov2_vits14", "cpu", workers=2, cores=8) == 0  # a network uses every core
    assert intra_op_threads(3, "dinov2_vits14", "cpu", workers=2, cores=8) == 3  # asked for: as asked
