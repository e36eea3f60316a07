"""`harvest demo`: the whole loop (collect → curate → train → targets → targeted collection) on a local shop."""
