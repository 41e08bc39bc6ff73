"""Layer 9, viz: figures, circuit graph drawings, the inspector's view data, offline HTML pages and widgets."""
