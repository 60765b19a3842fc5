/* The cross-core exchange of a two-thread row-split training step, alone: what does it cost on
 * this machine?
 *
 * Build and run: gcc -O3 -march=native -pthread scripts/exchange_model.c -o /tmp/exchange_model
 *                && /tmp/exchange_model
 *
 * A model of the memory traffic of dlbasics.kernels.network's split step for 64-100-10 (7,510
 * parameters, float32; 7,520 here so that the halves are whole 64-byte lines), no arithmetic to
 * speak of: two threads (pinned to CPUs 0 and 1), 20,000 steps, each step
 *   "gradient": thread t reads all of P and writes its whole row G[t];   then both meet;
 *   "update":   thread t updates its half of P from both rows of G;       then both meet.
 * So each update reads the other thread's freshly written half of G and writes P lines that the
 * other thread has just read, and each gradient pass reads the half of P that the other thread
 * has just written: the lines that must cross between the cores in a row split. Variants of
 * the update isolate the costs: reading the other's G but writing a private array; writing P
 * but reading only the own G; P that the other thread never reads; non-temporal stores to P.
 * Thread t always takes row t and half t, as the fused epochs' workers do (split_epochs_worker in
 * models/_core.py: each thread runs the same chunk and parameter part in every phase); not
 * modelled: the optimizer's state (local to its part), the step's arithmetic, and any overlap of
 * the traffic with it. Printed: microseconds per step of each phase on each thread, a one-thread run of the same
 * work (both rows, both halves: nothing crosses), and first the round trip of a counter
 * handed between the two threads (the machine's state: on the 2-vCPU benchmark machine one-way
 * handoffs take 25-33 ns most of the time and 150-175 ns in spells).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <x86intrin.h>

#define NP 7520
#define STEPS 20000
#define TSC_GHZ 2.596 /* the benchmark machine's TSC (BogoMIPS / 2); set yours */

static float G[2][NP] __attribute__((aligned(64)));
static float P[NP] __attribute__((aligned(64)));
static float Q[2][NP] __attribute__((aligned(64)));
static _Atomic long count __attribute__((aligned(64)));
static double grad_us[2], update_us[2];
static int mode;

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void meet(long target) {
    atomic_fetch_add(&count, 1);
    while (atomic_load_explicit(&count, memory_order_acquire) < target) _mm_pause();
}

static void *pingpong(void *arg) {
    pin(1);
    for (long i = 0; i < 100000; i++) {
        while (atomic_load_explicit(&count, memory_order_acquire) != 2 * i + 1) _mm_pause();
        atomic_store_explicit(&count, 2 * i + 2, memory_order_release);
    }
    return arg;
}

static void *step(void *arg) {
    int t = (int)(long)arg, lo = t ? NP / 2 : 0, hi = t ? NP : NP / 2;
    unsigned long long g = 0, u = 0;
    pin(t);
    for (long i = 0; i < STEPS; i++) {
        unsigned long long a = __rdtsc();
        const float *src = mode == 3 ? Q[t] : P;
        for (int k = 0; k < NP; k++) G[t][k] = src[k] * 0.5f + (float)i;
        unsigned long long b = __rdtsc();
        meet(4 * i + 2);
        unsigned long long c = __rdtsc();
        if (mode == 0 || mode == 3)
            for (int k = lo; k < hi; k++) P[k] -= 0.001f * (G[0][k] + G[1][k]);
        else if (mode == 1)
            for (int k = lo; k < hi; k++) Q[t][k] = P[k] - 0.001f * (G[0][k] + G[1][k]);
        else if (mode == 2)
            for (int k = lo; k < hi; k++) P[k] -= 0.001f * G[t][k];
        else {
            for (int k = lo; k < hi; k += 16) {
                __m512 p = _mm512_load_ps(&P[k]);
                __m512 s = _mm512_add_ps(_mm512_load_ps(&G[0][k]), _mm512_load_ps(&G[1][k]));
                _mm512_stream_ps(&P[k], _mm512_fnmadd_ps(_mm512_set1_ps(0.001f), s, p));
            }
            _mm_sfence();
        }
        unsigned long long d = __rdtsc();
        meet(4 * i + 4);
        g += b - a;
        u += d - c;
    }
    grad_us[t] = g / (TSC_GHZ * 1e3) / STEPS;
    update_us[t] = u / (TSC_GHZ * 1e3) / STEPS;
    return arg;
}

int main(void) {
    static const char *names[] = {
        "both (the split step's traffic)", "other's G read, private write",
        "own G only, P written", "P never read by the other", "non-temporal stores to P"};
    pthread_t th[2];
    pin(0);
    atomic_store(&count, 0);
    pthread_create(&th[1], 0, pingpong, 0);
    unsigned long long a = __rdtsc();
    for (long i = 0; i < 100000; i++) {
        atomic_store_explicit(&count, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&count, memory_order_acquire) != 2 * i + 2) _mm_pause();
    }
    unsigned long long b = __rdtsc();
    pthread_join(th[1], 0);
    printf("handoff round trip: %.0f ns\n", (b - a) / TSC_GHZ / 100000);
    for (mode = 0; mode < 5; mode++) {
        atomic_store(&count, 0);
        for (long t = 0; t < 2; t++) pthread_create(&th[t], 0, step, (void *)t);
        for (int t = 0; t < 2; t++) pthread_join(th[t], 0);
        printf("%-33s gradient %.2f / %.2f us, update %.2f / %.2f us (threads 0 / 1)\n",
               names[mode], grad_us[0], grad_us[1], update_us[0], update_us[1]);
    }
    pin(0);
    unsigned long long g = 0, u = 0;
    for (long i = 0; i < STEPS; i++) {
        unsigned long long c = __rdtsc();
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < NP; k++) G[t][k] = P[k] * 0.5f + (float)i;
        unsigned long long d = __rdtsc();
        for (int k = 0; k < NP; k++) P[k] -= 0.001f * (G[0][k] + G[1][k]);
        unsigned long long e = __rdtsc();
        g += d - c;
        u += e - d;
    }
    printf("one thread, both rows and halves:  gradient %.2f us, update %.2f us\n",
           g / (TSC_GHZ * 1e3) / STEPS, u / (TSC_GHZ * 1e3) / STEPS);
    return 0;
}
