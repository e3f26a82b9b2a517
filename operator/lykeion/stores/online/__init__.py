"""Online stores: the latest value of each feature per entity, for serving."""
