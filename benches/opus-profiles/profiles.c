/* Opus coded as the daemon's two profiles (src/audio/opus.rs, OpusProfile), over a raw 48 kHz
 * mono S16 file, 20 ms frames, complexity 5:
 *   voip BITRATE: VOIP mode, in-band FEC with a 5 % loss hint (what a service sends);
 *   celt BITRATE: restricted low delay, CELT alone (what the device sends).
 *
 *   profiles code  IN.raw voip|celt BITRATE LOSS OUT.raw [SEED]
 *       encodes the whole file, loses a fraction LOSS of the packets (the same ones for every
 *       profile, chosen by SEED: 7 if none), decodes as the daemon's receiver does (a lost
 *       packet from the next one's FEC data when that came, by concealment otherwise) and
 *       writes the result; prints the mean packet size and the encoder's thread CPU time per
 *       frame.
 *   profiles count IN.raw voip|celt BITRATE FRAMES
 *       encodes and decodes the first FRAMES frames, looping over the file, for counting
 *       instructions; prints the bytes coded. */
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME 960
#define MAX_FRAMES 3000

static opus_int16 speech[FRAME * MAX_FRAMES];
static unsigned char packets[MAX_FRAMES][1275];
static int lens[MAX_FRAMES];

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static OpusEncoder *encoder(const char *mode, int bitrate)
{
    int voip = strcmp(mode, "voip") == 0, e;
    if (!voip && strcmp(mode, "celt") != 0)
        return NULL;
    OpusEncoder *enc = opus_encoder_create(
        48000, 1, voip ? OPUS_APPLICATION_VOIP : OPUS_APPLICATION_RESTRICTED_LOWDELAY, &e);
    if (e != OPUS_OK)
        return NULL;
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));
    if (voip) {
        opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(1));
        opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(5));
    }
    opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(5));
    return enc;
}

int main(int argc, char **argv)
{
    int code = argc > 1 && strcmp(argv[1], "code") == 0;
    int count = argc > 1 && strcmp(argv[1], "count") == 0;
    if (!(code && (argc == 7 || argc == 8)) && !(count && argc == 6)) {
        fprintf(stderr, "usage: %s code IN.raw voip|celt BITRATE LOSS OUT.raw [SEED]\n"
                        "       %s count IN.raw voip|celt BITRATE FRAMES\n",
                argv[0], argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t whole = fread(speech, sizeof speech[0], sizeof speech / sizeof speech[0], f) / FRAME;
    fclose(f);
    int e;
    OpusEncoder *enc = encoder(argv[3], atoi(argv[4]));
    OpusDecoder *dec = opus_decoder_create(48000, 1, &e);
    if (!enc || e != OPUS_OK || whole < 1) {
        fprintf(stderr, "cannot set up %s at %s, or no speech\n", argv[3], argv[4]);
        return 1;
    }
    static opus_int16 out[FRAME];
    if (!code) {
        long frames = atol(argv[5]), bytes = 0;
        unsigned char packet[1275];
        for (long i = 0; i < frames; i++) {
            int len = opus_encode(enc, speech + (size_t)(i % (long)whole) * FRAME, FRAME,
                                  packet, sizeof packet);
            if (len < 0 || opus_decode(dec, packet, len, out, FRAME, 0) < 0)
                return 1;
            bytes += len;
        }
        printf("%ld\n", bytes);
        return 0;
    }
    double loss = atof(argv[5]), spent = 0;
    long bytes = 0;
    for (size_t i = 0; i < whole; i++) {
        double started = thread_seconds();
        lens[i] = opus_encode(enc, speech + i * FRAME, FRAME, packets[i], sizeof packets[i]);
        spent += thread_seconds() - started;
        if (lens[i] < 0)
            return 1;
        bytes += lens[i];
    }
    static char lost[MAX_FRAMES];
    srand(argc == 8 ? (unsigned)atoi(argv[7]) : 7);
    for (size_t i = 0; i < whole; i++)
        lost[i] = rand() < loss * RAND_MAX;
    FILE *o = fopen(argv[6], "wb");
    if (!o) {
        perror(argv[6]);
        return 1;
    }
    for (size_t i = 0; i < whole; i++) {
        int n;
        if (!lost[i])
            n = opus_decode(dec, packets[i], lens[i], out, FRAME, 0);
        else if (i + 1 < whole && !lost[i + 1])
            n = opus_decode(dec, packets[i + 1], lens[i + 1], out, FRAME, 1);
        else
            n = opus_decode(dec, NULL, 0, out, FRAME, 0);
        if (n != FRAME || fwrite(out, sizeof out[0], FRAME, o) != FRAME)
            return 1;
    }
    fclose(o);
    printf("%.0f %.1f\n", (double)bytes / (double)whole, spent / (double)whole * 1e6);
    return 0;
}
