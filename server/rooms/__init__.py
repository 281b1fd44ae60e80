"""Rooms: the catalog (merchants, products, rooms), the room record, its live state, the stage, chat and presence."""
