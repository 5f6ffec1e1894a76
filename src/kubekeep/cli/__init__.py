"""The ``kubekeep`` command: a thin shell over :mod:`kubekeep.api`, one module per verb."""
