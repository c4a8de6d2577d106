"""File boundaries: trajectory readers (MDAnalysis, mdtraj), atomic output writing, checksums."""
