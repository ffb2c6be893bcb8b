from glob import glob

from setuptools import find_packages, setup

PACKAGE = "isar_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["isar_ros", "isar_ros.*", "sim_bridge", "sim_bridge.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
    ],
    package_data={"isar_ros.web": ["static/*"]},
    python_requires=">=3.10",
    zip_safe=False,  # the web panel serves its static files from the package folder
    maintainer="isar_ros developers",
    description="Teach a robot new objects from a few clicks and find them in its camera stream.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "isar-ros = isar_ros.cli:main",
            "teach_node = isar_ros.ros.teach_node:main",
            "inference_node = isar_ros.ros.inference_node:main",
            "web_node = isar_ros.ros.web_node:main",
            "sim_bridge_node = sim_bridge.bridge_node:main",
        ],
    },
)
