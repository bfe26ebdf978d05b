"""DICOM out: the lesion and attention SEG, the TID 1500 SR, their codes, measurements and read-back checks.

Built only with highdicom (gaps wrapped in :mod:`inference.outputs.hd_compat`); imports no torch, so the
output objects can be built and tested without the models. :func:`inference.outputs.build.build_outputs`
is the one entry point the worker calls.
"""
