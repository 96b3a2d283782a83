"""Exceptions raised by dgl_bilevel, so callers can catch the library's own errors."""


class BilevelError(Exception):
    """Base class of every error dgl_bilevel raises on purpose."""


class DataError(BilevelError, ValueError):
    """Input data is malformed: shapes, masks, labels, features or files."""


class ConfigError(BilevelError, ValueError):
    """An option or a combination of options is invalid."""


class NonFiniteHypergradientError(BilevelError, FloatingPointError):
    """The hypergradient contains NaN or infinity; the outer loop cannot continue."""
