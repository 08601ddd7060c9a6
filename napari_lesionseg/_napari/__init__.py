"""Everything napari and Qt: reader, writer, sample data, the docks and the headless demo. Nothing outside this folder imports napari or Qt."""
