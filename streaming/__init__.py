"""Live video: hosts publish with WHIP, viewers watch with WHEP, and the relay forwards the host's encoded media."""
