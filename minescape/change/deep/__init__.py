"""Deep change detection: Siamese CNNs trained and run on a CPU or a CUDA GPU.

Modules (torch is imported only by the functions that need it, and at the top of :mod:`.networks` alone):

* :mod:`.networks`   the network classes (FC-EF, FC-Siam-conc, FC-Siam-diff, siam-att), module level;
* :mod:`.model`      the :class:`~.model.ChangeModel` value, ``build_model``, weights-only ``save``/``load``;
* :mod:`.norm`       input normalisation (global or per-image);
* :mod:`minescape.compute` (core, shared with the maps U-Net) decides device, precision and threads;
* :mod:`.batches`    training batches built on the device (crops, flips, rotations, date swap, jitter);
* :mod:`.train`      training, validation, threshold choice, checkpoints;
* :mod:`.runner`     a network on tiles (torch or onnxruntime, flips in one batch), ensembles;
* :mod:`.infer`      scene prediction, streamed strip by strip (tiles blended by :mod:`minescape.geo.blend`);
* :mod:`.onnx_backend` ONNX export and onnxruntime; :mod:`.model_card` the JSON card; :mod:`.demo` the demo stage.

Pairs are read by :mod:`minescape.change.pairs` (shared with the index method) and co-registered by
:mod:`minescape.change.coregister` (also shared).
"""
