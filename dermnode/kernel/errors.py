"""The one exception root of dermnode; every module raises subclasses of :class:`DermnodeError`."""


class DermnodeError(Exception):
    """Root of all dermnode errors."""


class ConfigurationError(DermnodeError):
    """A setting is missing or invalid; the message says which one and how to fix it."""


class LedgerError(DermnodeError):
    """The study ledger could not record or find a study or an instance."""


class SpoolError(DermnodeError):
    """A received instance could not be made durable on disk."""


class BundleError(DermnodeError):
    """A model bundle is missing a file or its metadata is inconsistent."""


class InferenceError(DermnodeError):
    """Pixel data could not be decoded or a model could not run on it."""


class OutputError(DermnodeError):
    """An SR or SEG object could not be built from the source and the prediction."""


class NotFoundError(DermnodeError):
    """A study, peer or destination named by an administrator does not exist."""
