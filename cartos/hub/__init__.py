"""The store hub: receives what every cart sends, commits it durably, acknowledges it, and (as
it grows) keeps the store's master catalogue and publishes signed update bundles."""
