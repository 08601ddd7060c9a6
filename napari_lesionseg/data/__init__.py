"""Files -> volumes: NIfTI geometry, subject naming and loading, resampling, normalisation, corrections, sample data and the phantom."""
