"""Who hosts and who may book: meeting rotations and the owner's trust circle."""
