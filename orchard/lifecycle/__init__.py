"""The lifecycle's steps as plain functions: the flows in flows/ only order them."""
