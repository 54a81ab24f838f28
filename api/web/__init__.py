"""The portal's server-rendered web pages for people in a browser."""
