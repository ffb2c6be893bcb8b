"""ROS-free message I/O shared by the nodes, the sim bridge and the benchmark.

* :mod:`~isar_ros.msgio.image_codec` - numpy <-> ``sensor_msgs/Image`` / ``CompressedImage`` (cv_bridge's
semantics);
* :mod:`~isar_ros.msgio.timing` - stamps of replayed scenes (start time, 30 fps) and back to frame indices;
* :mod:`~isar_ros.msgio.topics` - the default topic and service names of the graph;
* :mod:`~isar_ros.msgio.bag_types` - the rosbags type store with ``isar_ros_msgs`` registered.

Nothing here imports rclpy: these modules work on rclpy and rosbags messages alike (they only read
attributes), so the benchmark can score recorded bags and the generator can write them without ROS.
"""
