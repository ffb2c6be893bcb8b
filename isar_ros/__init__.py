"""isar_ros: teach a robot new objects at runtime and find those very objects in its camera stream."""

__version__ = "0.1.0"
