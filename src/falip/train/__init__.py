"""Training the shipped model (falip-tiny) on synthetic scenes."""
