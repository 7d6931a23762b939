"""Credit statistics: binning and WOE, scorecards, LightGBM models, metrics, the PSI kernel, expected loss."""
