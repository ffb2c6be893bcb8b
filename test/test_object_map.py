"""The object map: a robust running estimate per object that follows moved objects, saved beside the
memory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isar_ros.core.memory_snapshot import MemoryFormatError
from isar_ros.core.object_map import MAP_FILE, ObjectMap


def test_one_wrong_observation_does_not_move_an_object_but_a_real_move_does():
    m = ObjectMap(moved_m=0.25, moved_after=3)
    for k in range(5):
        m.observe(1, "mug", [1.0 + 0.01 * k, 2.0, 0.8], [0.1, 0.1, 0.1], 100.0 + k, 0.9, "map")
    # a mistaken detection elsewhere
    assert not m.observe(1, "mug", [4.0, 2.0, 0.8], [0.1] * 3, 106.0, 0.9, "map")
    np.testing.assert_allclose(m.where(1).position, [1.02, 2.0, 0.8])
    assert m.where(1).observations == 5
    for k in range(3):  # the mug was carried to the other table: three observations there in a row
        m.observe(1, "mug", [3.0 + 0.01 * k, 1.0, 0.8], [0.1] * 3, 110.0 + k, 0.8, "map")
    np.testing.assert_allclose(m.where(1).position, [3.01, 1.0, 0.8])
    assert m.where(1).observations == 1 and m.where(1).last_seen_s == 112.0


def test_forgotten_objects_leave_the_map_and_renames_follow():
    m = ObjectMap()
    m.observe(1, "mug", [1, 2, 3], [0.1] * 3, 1.0, 0.9, "map")
    m.observe(2, "box", [0, 0, 0], [0.1] * 3, 1.0, 0.9, "map")
    m.keep_only({2: "crate"})
    assert m.where(1) is None and m.where(2).name == "crate"


def test_the_map_survives_a_save_and_a_corrupt_file_is_named(tmp_path):
    m = ObjectMap()
    m.observe(3, "mug", [1.5, -0.5, 0.7], [0.2, 0.1, 0.3], 42.5, 0.75, "map")
    m.save(tmp_path)
    back = ObjectMap.load(tmp_path)
    np.testing.assert_allclose(back.where(3).position, [1.5, -0.5, 0.7])
    assert (back.where(3).name, back.where(3).last_seen_s, back.where(3).frame_id) == ("mug", 42.5, "map")
    assert ObjectMap.load(tmp_path / "elsewhere").entries == {}
    raw = json.loads((tmp_path / MAP_FILE).read_text())
    raw["objects"][0]["positions"] = [[float("nan"), 0, 0]]
    (tmp_path / MAP_FILE).write_text(json.dumps(raw))
    with pytest.raises(MemoryFormatError, match=f"{MAP_FILE}: unreadable object map"):
        ObjectMap.load(tmp_path)
