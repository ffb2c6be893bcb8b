"""Command line entry point: ``isar-ros <command>``."""
import sys


def main(argv=None) -> int:
    print("isar-ros: the demo is not built yet", file=sys.stderr)
    return 2
