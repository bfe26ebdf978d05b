"""Training recipes for dermnode's reference bundles (classification and segmentation)."""
