"""The DICOM edge and the durable state: the AE and its association policy, C-STORE intake, the spool,
the study ledger, study completion, and the C-STORE SCU. It never imports :mod:`workers`; it hands complete
studies to whatever implements :class:`dicom_node.dispatch.Dispatcher`."""
