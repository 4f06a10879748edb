"""One exception type per family of bad input, each raised with the offending path or key."""


class StyleCrafterError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(StyleCrafterError, ValueError):
    """A config key, value or combination of values that cannot work."""


class ShapeError(StyleCrafterError, ValueError):
    """An array argument whose rank, shape or dtype is not what the callee needs."""


class CheckpointMismatchError(StyleCrafterError, ValueError):
    """A checkpoint or state dict that does not fit the model: missing, unexpected or mis-shaped keys."""


class DataError(StyleCrafterError, ValueError):
    """Input data (an image, a video, a caption file, a dataset) that cannot be read or used."""
