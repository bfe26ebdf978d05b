"""The models: MONAI bundles, the network registry, preprocessing and the :class:`~inference.models.predict.Analyzer`
(everything that imports torch or MONAI lives here; :mod:`inference.models.prediction` is plain data)."""
