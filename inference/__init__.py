"""dermnode's analysis library, in four sub-packages by concern (imports run downwards only):

- :mod:`inference.evaluation`: metrics, ``evaluate`` and its plots (never imported by the serving path);
- :mod:`inference.training`: the data folder, the fixed split and the recipes that make reference bundles;
- :mod:`inference.outputs`: the DICOM objects made from a prediction (SEG, SR, their codes and checks);
  no torch;
- :mod:`inference.models`: MONAI bundles, networks, preprocessing and prediction (everything torch).

It imports nothing from :mod:`dicom_node` or :mod:`workers`; errors come from :mod:`dermnode.kernel`.
"""
