// placeholder, replaced by the embedded cluster implementation
