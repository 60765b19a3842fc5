"""Tuning constants for the kernels, in one place.

Tests may patch these (for example ``THREADS_PER_BLOCK`` small, so that tiny GPU inputs still
span several blocks). Compiled functions read the values they need as arguments, never as
globals, so patching takes effect without recompiling.
"""

#: Below this many multiply-adds per row (``n_in * n_out``) dense products use hand-written
#: loops; above it they call BLAS through ``np.dot``. Measured on the benchmark machine (one
#: BLAS thread, whole training steps): from 8 rows on, BLAS is as fast or faster for every
#: layer of 784-256-256-10 and 2-16-16-1 (2-16-16-1 at 1024 rows: 344 us against 774 us with
#: loops below 4096 multiply-adds per row; 784-256-256-10 at 1024 rows: 11.1 ms against 14.2
#: ms with its 256x10 output layer in loops). So only the row count decides.
BLAS_MIN_WORK = 1

#: Prediction and evaluation keep the former rule: hand-written loops for layers under this
#: many multiply-adds per row whatever the row count. Then a small network's output for a
#: row does not depend on how many rows are predicted with it (scikit-learn's
#: ``check_methods_subset_invariance``), since loops and BLAS sum in different orders.
PREDICT_BLAS_MIN_WORK = 4096

#: Dense products with fewer rows than this use hand-written loops even when the layer is large
#: (a single sample through 784x256 is a matrix-vector product, where loops beat a GEMM call).
BLAS_MIN_ROWS = 8

#: Training with mini-batches smaller than this runs BLAS single-threaded (threadpoolctl): on
#: small products OpenBLAS' threads cost more than they bring, and on a loaded 2-core machine
#: they were measured 7x slower (784-256-256-10 at batch 32: 4.9k vs 35k samples/s).
BLAS_THREADED_MIN_ROWS = 256

#: Training products that BLAS would take, of layers of at least this many weights, run
#: through our register-blocked products (:mod:`dlbasics.kernels.smallgemm`) wherever BLAS runs
#: on one thread: below :data:`BLAS_THREADED_MIN_ROWS` rows and in the row split's chunks.
#: Measured on the 2-core benchmark machine (float32, one thread, each product repeated on the
#: same operands, GFLOP/s ours / OpenBLAS; forward, back-propagation, weight gradient): at
#: 512 rows (a chunk of a batch of 1024) 784x256 104 / 91, 103 / 105, 113 / 98; 256x256
#: 117 / 102, 94 / 99, 108 / 90; at 64 rows 784x256 107 / 81, 97 / 76, 99 / 90; 256x256 115 /
#: 84, 110 / 86, 110 / 91. Below the threshold BLAS kept up or won: 256x10 at 64 rows 70 / 65,
#: 20 / 52, 47 / 62; 64x100 at 100 rows 96 / 98, 72 / 77, 97 / 105.
OWN_PRODUCTS_MIN_WORK = 1 << 14

#: Training batches of at least this many rows are split into :data:`SPLIT_CHUNKS` row chunks,
#: one thread each, by the CPU backend (``dlbasics.kernels.network.split_epoch``; not with
#: dropout). With a parallel region per batch phase it took 128 rows to pay (float32, one BLAS
#: thread per chunk against the whole batch on one thread; microseconds per batch): 2-16-16-1
#: at 64 rows 10.4 against 9.1, at 128 rows 14.6 / 17.1; 784-256-256-10 at 32 rows 600 / 577,
#: at 128 rows 1217 / 1790. With one region an epoch (the threads meeting through atomic
#: counters), split against whole on the 2-core benchmark machine (float32, Adam, the best of
#: 5 epochs in each of two alternating runs): 2-16-16-1 at 32 rows 1.05x, 64 rows 1.29x,
#: 96 rows 1.42x, 128 rows 1.47x; 784-256-256-10 at 32 rows 0.95x, 64 rows 1.11x, 128 rows
#: 1.43x.
SPLIT_MIN_ROWS = 64

#: ... and at least this many row-parameters (rows x the network's parameters): a small
#: network's batch is split from ``SPLIT_MIN_WORK / n_params`` rows on (2-16-16-1, 337
#: parameters: 49 rows, so :data:`SPLIT_MIN_ROWS` decides). With two parallel regions a batch
#: the threshold was 32k row-parameters (2-16-16-1 split lost at 64 rows, 22k: 6.98M against
#: 7.23M samples/s). With one region an epoch it is halved, not measured below 64 rows' worth:
#: the smallest measured split, 2-16-16-1 at 32 rows (10.8k row-parameters), gained 1.05x.
SPLIT_MIN_WORK = 1 << 14

#: Row chunks of a split batch. A constant, not the machine's thread count, so that the
#: results do not depend on the machine: each chunk sums its own rows, so the chunk count sets
#: the order of the gradient's sums (the thread count does not).
SPLIT_CHUNKS = 2

#: Training batches of plain SGD from :data:`BLAS_MIN_ROWS` to :data:`COL_SPLIT_MAX_ROWS` rows
#: through a network of at least :data:`COL_SPLIT_MIN_PARAMS` parameters, and of at least
#: :data:`COL_SPLIT_MIN_WORK` rows x parameters, have each layer's units split between two
#: threads (:mod:`dlbasics.kernels.colsplit`) by the CPU backend with two or more Numba
#: threads, before the row split is considered. Measured on the 2-core benchmark machine
#: (float32, samples/s, the best of 4 alternating runs; column split / batch whole on one
#: thread / row split): 784-256-256-10 (269k parameters) at 32 rows 89.8k / 50.7k / 41.3k, 64
#: rows 100k / 61.9k / 58.3k, 128 rows 106k / 68.2k / 92.9k, 256 rows 75.9k / 121k (BLAS
#: threaded) / 117k, 1024 rows 93.4k / 117k / 125k; 200-128-64-10 (34.6k parameters) at 8 rows
#: 303k / 431k / 61.7k (277k row-parameters: lost), 32 rows 535k / 524k / 339k (1.1M: even),
#: 64 rows 570k / 442k / 521k (2.2M: won), 128 rows 448k / 445k / 426k.
#: (Those figures are from before each part trained its columns packed,
#: :func:`dlbasics.kernels.colsplit.packed_layout`, and through products of our own,
#: :mod:`dlbasics.kernels.smallgemm`, which made the column split 1.1-1.4x faster from 8 to 128
#: rows; not measured again: at 256 rows it then beat the row split in two noisy runs, 1.74-1.85
#: against 2.09-4.02 ms a step of 784-256-256-10, at 1024 rows it lost, 9.3-11.4 against
#: 7.6-8.3 ms.)
COL_SPLIT_MIN_PARAMS = 1 << 15
COL_SPLIT_MIN_WORK = 3 << 19
COL_SPLIT_MAX_ROWS = 128

#: Batches of a single row take the column split too, through networks of at least this many
#: parameters: with each part's columns packed (its half of 784-256-256-10's weights in its
#: core's L2 cache) one row got faster on two threads. Measured on the 2-core benchmark
#: machine (float32, plain SGD, us a step, the better of two alternating runs; column split /
#: whole on one thread): 784-64-64-10 (55k parameters) 12.4 / 6.7, 784-80-80-10 (70k) 14.5 /
#: 8.7, 784-96-96-10 (86k) 10.7 / 10.4, 784-112-112-10 (102k) 10.6 / 12.2, 784-128-128-10
#: (118k) 10.7 / 14.7, 784-256-256-10 (269k) 21.8 / 34.8, 784-512-512-10 (670k) 52.9 / 93.6,
#: 784-1024-1024-10 (1.86M) 158 / 275. 86k parameters was a tie within the noise (the column
#: split's times do not fall monotonically with size here): the threshold lies between 86k and
#: 102k. Two to seven rows stay whole: the parts' own loops for those lost (measured the same
#: way, the columns packed: 784-256-256-10 at 2 rows 443 / 89 us, at 4 rows 281 / 160; the
#: two-row figure, slower than four rows, was not investigated; those loops are gone, and the
#: register-blocked products that replaced them were not measured at 2 to 7 rows). One row
#: through 784-256-256-10 now takes 14-16.6 us (:mod:`dlbasics.kernels.rowvec`).
COL_SPLIT_MIN_PARAMS_ONE_ROW = 3 << 15

#: Default slope of ``leaky_relu`` for negative inputs.
LEAKY_SLOPE = 0.01

#: Clip applied to probabilities in the probability forms of the cross-entropy losses.
PROB_EPS32 = 1e-7
PROB_EPS64 = 1e-12

#: GPU launch configuration (used by ``dlbasics.kernels.gpu_*``).
THREADS_PER_BLOCK = 256
TILE = 16
MAX_BLOCKS = 65535
