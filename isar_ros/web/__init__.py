"""The browser panel (no rclpy here: the isar_web node feeds it)."""
