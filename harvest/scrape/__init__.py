"""`harvest scrape`: images from web pages (static or rendered), driven by a resumable frontier in the catalog."""
