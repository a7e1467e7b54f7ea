/* The toolkit's version and the commit it was built from, for every program's --version. */
#ifndef COMMON_VERSION_H
#define COMMON_VERSION_H

#define WSH_VERSION "0.1.0"
/* The Makefile passes `git describe --always --dirty`; a build outside it says so. */
#ifndef WSH_COMMIT
#define WSH_COMMIT "unknown"
#endif

#endif
