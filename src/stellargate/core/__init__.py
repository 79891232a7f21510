"""The canonical model every dialect parses into and every provider adapter translates from."""
