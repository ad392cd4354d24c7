"""Several devices in one house: which one answers a wake word they all heard."""
