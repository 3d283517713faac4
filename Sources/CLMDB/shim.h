#ifndef TANDEM_CLMDB_SHIM_H
#define TANDEM_CLMDB_SHIM_H
#include <lmdb.h>
#endif
