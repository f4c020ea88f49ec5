"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class LinfVerifyError(Exception):
    """Base class of every error caused by bad input (files, options, models, data)."""

    exit_code = 2


class ModelError(LinfVerifyError):
    """The ONNX file cannot be read, is unsafe, or uses ops we cannot bound."""


class DataError(LinfVerifyError):
    """The data (npz, dataset name, data dir) is missing or malformed."""


class CertificateError(LinfVerifyError):
    """A certificate file is malformed, tampered with, or does not match model/data."""

    exit_code = 1


class SoundnessAlarm(LinfVerifyError):
    """A sample is both certified and falsified: the verifier or the model file is wrong."""

    exit_code = 3


class PropertyError(LinfVerifyError):
    """A VNN-LIB property file is malformed, unsupported, or does not fit the model."""
