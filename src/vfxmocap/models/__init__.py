"""The model catalog (one list of every model, as data) and the store that holds their files."""
