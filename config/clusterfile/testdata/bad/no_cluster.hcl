# A file with no cluster in it.
