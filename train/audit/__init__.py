"""`train audit`: out-of-fold predictions for every image of a snapshot, and the label errors they reveal."""
