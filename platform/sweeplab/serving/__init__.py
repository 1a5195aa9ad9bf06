"""REST service of a registered model (``sweeplab serve``)."""
