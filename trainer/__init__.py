"""Joint training of the spiking stereo JSCC encoder, differentiable channel and decoder."""
