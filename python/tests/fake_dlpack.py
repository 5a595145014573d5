"""DLPack tensors that claim to live on a CUDA device, for testing argument validation without a GPU.

Their data pointers are fake and never dereferenced: validation fails before any launch.
"""

import ctypes

KDL_CUDA = 2
CODES = {"int": 0, "uint": 1, "float": 2, "bfloat": 4}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_no_op_deleter = _DELETER(lambda managed: None)  # the importer calls it when done; nothing to free

_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_keep_alive = []  # the importer may hold on to the struct after the capsule is gone


class FakeCudaTensor:
    def __init__(self, shape, dtype="uint", bits=8, address=0x7F0000000000, strides=None):  # dtype: a name or a DLPack code
        self.shape = tuple(shape)
        if strides is None:
            strides, step = [], 1
            for extent in reversed(self.shape):
                strides.insert(0, step)
                step *= extent
        self.strides = tuple(strides)
        self.dtype, self.bits, self.address = dtype, bits, address

    def __dlpack_device__(self):
        return (KDL_CUDA, 0)

    def __dlpack__(self, *args, **kwargs):
        ndim = len(self.shape)
        shape = (ctypes.c_int64 * ndim)(*self.shape)
        strides = (ctypes.c_int64 * ndim)(*self.strides)
        managed = _DLManagedTensor()
        managed.dl_tensor.data = self.address
        managed.dl_tensor.device = _DLDevice(KDL_CUDA, 0)
        managed.dl_tensor.ndim = ndim
        managed.dl_tensor.dtype = _DLDataType(CODES.get(self.dtype, self.dtype), self.bits, 1)
        managed.dl_tensor.shape = shape
        managed.dl_tensor.strides = strides
        managed.dl_tensor.byte_offset = 0
        managed.deleter = ctypes.cast(_no_op_deleter, ctypes.c_void_p)
        _keep_alive.append((managed, shape, strides))
        return _PyCapsule_New(ctypes.addressof(managed), b"dltensor", None)
