/* FastCDC 2020 with a caller-supplied gear table (docs/format.md, "Blobs and chunking").
 *
 * The cut rule is pyfastcdc's normalized FastCDC 2020, byte for byte: the same masks, the same
 * two-bytes-per-step loop with a left-shifted table, the same cut offsets. Only the table differs:
 * pyfastcdc can XOR one seed into its public table, which leaves 48 secret bits that known
 * plaintext reveals; here all 256 entries come from the caller (kubekeep draws them from a keyed
 * PRF of the repository key). No library on PyPI takes a whole custom table, hence this module.
 *
 * cut_buf() scans with the GIL released and returns the end offset of every chunk.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define GEAR_ENTRIES 256
#define GEAR_BYTES (GEAR_ENTRIES * 8)

/* pyfastcdc/fastcdc-rs masks by log2(size); index = bits +/- normalization level */
static const uint64_t MASKS[26] = {
    0, 0, 0, 0, 0,
    0x0000000001804110ULL, /* unused except for NC 3 */
    0x0000000001803110ULL, /* 64B */
    0x0000000018035100ULL, /* 128B */
    0x0000001800035300ULL, /* 256B */
    0x0000019000353000ULL, /* 512B */
    0x0000590003530000ULL, /* 1KB */
    0x0000d90003530000ULL, /* 2KB */
    0x0000d90103530000ULL, /* 4KB */
    0x0000d90303530000ULL, /* 8KB */
    0x0000d90313530000ULL, /* 16KB */
    0x0000d90f03530000ULL, /* 32KB */
    0x0000d90303537000ULL, /* 64KB */
    0x0000d90703537000ULL, /* 128KB */
    0x0000d90707537000ULL, /* 256KB */
    0x0000d91707537000ULL, /* 512KB */
    0x0000d91747537000ULL, /* 1MB */
    0x0000d91767537000ULL, /* 2MB */
    0x0000d93767537000ULL, /* 4MB */
    0x0000d93777537000ULL, /* 8MB */
    0x0000d93777577000ULL, /* 16MB */
    0x0000db3777577000ULL, /* unused except for NC 3 */
};

#define MIN_SIZE_LOWER 64ULL
#define MIN_SIZE_UPPER (1ULL << 20)
#define AVG_SIZE_LOWER 256ULL
#define AVG_SIZE_UPPER (4ULL << 20)
#define MAX_SIZE_LOWER 1024ULL
#define MAX_SIZE_UPPER (16ULL << 20)

typedef struct {
    PyObject_HEAD
    uint64_t gear[GEAR_ENTRIES];
    uint64_t gear_ls[GEAR_ENTRIES];
    uint64_t min_size, avg_size, max_size;
    uint64_t mask_s, mask_l, mask_s_ls, mask_l_ls;
    int normalization;
} GearCDC;

/* round(log2(value)), as pyfastcdc and fastcdc-rs compute it */
static int logarithm2(uint64_t value) {
    int bits = 63;
    while (bits > 0 && !(value >> bits)) bits--;
    /* round up when value >= 2^bits * sqrt(2), i.e. value^2 >= 2^(2*bits+1) */
    if (bits < 31 && value * value >= (1ULL << (2 * bits + 1))) bits++;
    return bits;
}

/* Length of the next chunk of buf[0:len]; never 0 for len > 0. */
static uint64_t cut_one(const GearCDC *c, const uint8_t *buf, uint64_t len) {
    uint64_t remaining = len;
    if (remaining <= c->min_size) return remaining;
    uint64_t center = c->avg_size;
    if (remaining > c->max_size) remaining = c->max_size;
    else if (remaining < center) center = remaining;

    const uint64_t *gear = c->gear, *gear_ls = c->gear_ls;
    uint64_t hash = 0;
    uint64_t pos = (c->min_size / 2) * 2;
    const uint64_t mid = (center / 2) * 2, end = (remaining / 2) * 2;
    const uint64_t mask_s = c->mask_s, mask_s_ls = c->mask_s_ls;
    const uint64_t mask_l = c->mask_l, mask_l_ls = c->mask_l_ls;

    for (; pos < mid; pos += 2) {
        hash = (hash << 2) + gear_ls[buf[pos]];
        if (!(hash & mask_s_ls)) return pos;
        hash += gear[buf[pos + 1]];
        if (!(hash & mask_s)) return pos + 1;
    }
    for (; pos < end; pos += 2) {
        hash = (hash << 2) + gear_ls[buf[pos]];
        if (!(hash & mask_l_ls)) return pos;
        hash += gear[buf[pos + 1]];
        if (!(hash & mask_l)) return pos + 1;
    }
    return remaining;
}

static int GearCDC_init(GearCDC *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"gear", "min_size", "avg_size", "max_size", "normalization", NULL};
    Py_buffer table;
    unsigned long long min_size, avg_size, max_size;
    int normalization = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*KKK|i", kwlist, &table, &min_size, &avg_size,
                                     &max_size, &normalization))
        return -1;
    if (table.len != GEAR_BYTES) {
        PyBuffer_Release(&table);
        PyErr_Format(PyExc_ValueError, "the gear table must be %d bytes, got %zd", GEAR_BYTES, table.len);
        return -1;
    }
    const uint8_t *raw = (const uint8_t *)table.buf;
    for (int i = 0; i < GEAR_ENTRIES; i++) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--) v = (v << 8) | raw[i * 8 + b]; /* little-endian */
        self->gear[i] = v;
        self->gear_ls[i] = v << 1;
    }
    PyBuffer_Release(&table);

    if (avg_size < AVG_SIZE_LOWER || avg_size > AVG_SIZE_UPPER ||
        min_size < MIN_SIZE_LOWER || min_size > MIN_SIZE_UPPER ||
        max_size < MAX_SIZE_LOWER || max_size > MAX_SIZE_UPPER ||
        min_size > avg_size || avg_size > max_size) {
        PyErr_Format(PyExc_ValueError,
                     "chunk sizes out of range: need 64 <= min <= 1 MiB, 256 <= avg <= 4 MiB, "
                     "1 KiB <= max <= 16 MiB and min <= avg <= max (got %llu, %llu, %llu)",
                     min_size, avg_size, max_size);
        return -1;
    }
    if (normalization < 0 || normalization > 3) {
        PyErr_Format(PyExc_ValueError, "normalization must be 0 to 3, got %d", normalization);
        return -1;
    }
    int bits = logarithm2(avg_size);
    self->min_size = min_size;
    self->avg_size = avg_size;
    self->max_size = max_size;
    self->normalization = normalization;
    self->mask_s = MASKS[bits + normalization];
    self->mask_l = MASKS[bits - normalization];
    self->mask_s_ls = self->mask_s << 1;
    self->mask_l_ls = self->mask_l << 1;
    return 0;
}

static PyObject *GearCDC_cut_buf(GearCDC *self, PyObject *arg) {
    if (self->max_size == 0) {
        PyErr_SetString(PyExc_ValueError, "GearCDC was not initialised");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *buf = (const uint8_t *)view.buf;
    const uint64_t len = (uint64_t)view.len;

    size_t cap = 64, n = 0;
    uint64_t *ends = PyMem_RawMalloc(cap * sizeof(uint64_t));
    int failed = ends == NULL;
    /* the exported buffer cannot be resized while we hold it, so scanning without the GIL is safe */
    Py_BEGIN_ALLOW_THREADS
    uint64_t offset = 0;
    while (!failed && offset < len) {
        offset += cut_one(self, buf + offset, len - offset);
        if (n == cap) {
            uint64_t *grown = PyMem_RawRealloc(ends, 2 * cap * sizeof(uint64_t));
            if (grown == NULL) {
                failed = 1;
                break;
            }
            ends = grown;
            cap *= 2;
        }
        ends[n++] = offset;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) {
        PyMem_RawFree(ends);
        return PyErr_NoMemory();
    }
    PyObject *result = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; result != NULL && i < n; i++) {
        PyObject *item = PyLong_FromUnsignedLongLong(ends[i]);
        if (item == NULL) Py_CLEAR(result);
        else PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    PyMem_RawFree(ends);
    return result;
}

static PyObject *GearCDC_get_min(GearCDC *self, void *closure) { return PyLong_FromUnsignedLongLong(self->min_size); }
static PyObject *GearCDC_get_avg(GearCDC *self, void *closure) { return PyLong_FromUnsignedLongLong(self->avg_size); }
static PyObject *GearCDC_get_max(GearCDC *self, void *closure) { return PyLong_FromUnsignedLongLong(self->max_size); }

static PyMethodDef GearCDC_methods[] = {
    {"cut_buf", (PyCFunction)GearCDC_cut_buf, METH_O,
     "cut_buf(buf) -> list[int]: the end offset of every chunk of buf, ascending; the last is len(buf)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef GearCDC_getset[] = {
    {"min_size", (getter)GearCDC_get_min, NULL, "minimum chunk size", NULL},
    {"avg_size", (getter)GearCDC_get_avg, NULL, "average size parameter", NULL},
    {"max_size", (getter)GearCDC_get_max, NULL, "maximum chunk size", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GearCDCType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kubekeep.engine._gearcdc.GearCDC",
    .tp_doc = "GearCDC(gear, min_size, avg_size, max_size, normalization=1): FastCDC 2020 cutting "
              "with a 2048-byte table of 256 little-endian 64-bit gear values.",
    .tp_basicsize = sizeof(GearCDC),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)GearCDC_init,
    .tp_methods = GearCDC_methods,
    .tp_getset = GearCDC_getset,
};

static struct PyModuleDef gearcdc_module = {
    PyModuleDef_HEAD_INIT, "_gearcdc", "FastCDC 2020 content-defined chunking with a custom gear table.", -1, NULL,
};

PyMODINIT_FUNC PyInit__gearcdc(void) {
    if (PyType_Ready(&GearCDCType) < 0) return NULL;
    PyObject *m = PyModule_Create(&gearcdc_module);
    if (m == NULL) return NULL;
    Py_INCREF(&GearCDCType);
    if (PyModule_AddObject(m, "GearCDC", (PyObject *)&GearCDCType) < 0) {
        Py_DECREF(&GearCDCType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
