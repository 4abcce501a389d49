"""The customers' web chat widget: static files served beside the agent desk (see ``routes``)."""
