"""Knowledge base: categorised FAQ entries under data/kb/, hybrid retrieval, hot reload."""
