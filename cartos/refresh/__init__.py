"""The backbone refresh: a hub-side job that fine-tunes the backbone on the store's own
images, and the validation gate a refreshed model must pass before any cart sees it."""
