"""Home Assistant's Wyoming protocol: voiced as a satellite and as speech services.

framing (bounded frames in and out), info (what ``describe`` answers), services
(speech-to-text, text-to-speech, wake word, handle), satellite (Home Assistant runs
voiced's turns), connection (one peer's events), server (the TCP server beside the
pipeline) and announce (zeroconf).
"""
