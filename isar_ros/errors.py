"""The two kinds of failure: what a user can fix, and everything else (a bug).

Every error a user can cause - a bad prompt, an image in an unsupported encoding, a missing
checkpoint, a corrupt memory folder, a wrong parameter - derives from :class:`UserError`, and its
message says what was wrong and what to do. Nodes answer such errors with ``success: false`` and
keep running; the ``isar-ros`` command prints them as one line and exits with code 2. Anything
else is a bug: it is logged with its traceback (nodes) or raised (the command), never dressed up as
a user error.

The specific errors live next to the code that raises them and derive from this module's classes:

=============================  ==================================  =====================================
error                          module                              raised for
=============================  ==================================  =====================================
``PromptError``                ``isar_ros.core.prompt_mask``       clicks and boxes that cannot be used
``MemoryFormatError``          ``isar_ros.core.memory_snapshot``   memories that cannot be loaded/changed
``ProjectionError``            ``isar_ros.core.geometry``          RViz clicks that cannot become pixels
``WeightsNotFound``            ``isar_ros.core.weights``           a checkpoint that is not on disk
``ImageConversionError``       ``isar_ros.msgio.image_codec``      image messages that cannot be decoded
``IsarFormatError``            ``isar_ros.isar.layout``            malformed ISAR dataset files
``ConfigurationError``         here                                parameters and options that are wrong
=============================  ==================================  =====================================
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""


class InvalidInput(UserError, ValueError):
    """A value the user supplied (a prompt, an image, a name, a file's content) that cannot be used."""


class ConfigurationError(UserError, ValueError):
    """A parameter, option or configuration file entry that is wrong (unknown, out of range, wrong type)."""


class MissingResource(UserError, FileNotFoundError):
    """A file or folder the user must supply (a checkpoint, a dataset) is not there."""
