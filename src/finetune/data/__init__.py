"""Images and labels: every data source (``sources``), how they are held out (``splits``), the
prepared splits on disk (``prepared``), and the readers of archives, folders and image files."""
