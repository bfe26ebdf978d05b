"""The node's operations side: health, Prometheus metrics, the admin API and status page over HTTP, and DICOM
audit messages to syslog. It observes the DICOM edge (association answers, the ledger's event trail) and
changes it only through the ledger and the registry; it never imports the workers or the models."""
