using System.IO.Compression;
using Sadg.Data;
using Sadg.Tests.Support;

namespace Sadg.Tests.Data;

public class IdxTests
{
    static byte[] Header(byte type, params int[] dims) =>
        new byte[] { 0, 0, type, (byte)dims.Length }.Concat(dims.SelectMany(d => new[] { (byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d })).ToArray();

    [Fact]
    public void ReadsPlainAndGzippedFiles()
    {
        using var dir = new TempFolder();
        byte[] pixels = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)(i * 10)).ToArray();
        File.WriteAllBytes(dir.File("images.idx"), Header(0x08, 2, 3, 4).Concat(pixels).ToArray());
        using (var gz = new GZipStream(File.Create(dir.File("labels.idx.gz")), CompressionLevel.Fastest))
            gz.Write(Header(0x08, 2).Concat(new byte[] { 7, 3 }).ToArray());

        using var set = LabelledImages.FromIdx(dir.File("images.idx"), dir.File("labels.idx.gz"));
        Assert.Equal(new long[] { 2, 1, 3, 4 }, set.Images.shape);
        Assert.Equal(230f / 255f, set.Images[1, 0, 2, 3].item<float>(), 6);
        Assert.Equal(new long[] { 7, 3 }, set.Labels.data<long>().ToArray());
    }

    [Fact]
    public void BadFilesAreClearErrors()
    {
        using var dir = new TempFolder();
        File.WriteAllBytes(dir.File("short.idx"), Header(0x08, 10, 28, 28).Concat(new byte[5]).ToArray());
        var e = Assert.Throws<SadgException>(() => Idx.Read(dir.File("short.idx")));
        Assert.Equal(SadgErrorCode.DataInvalid, e.Code);
        Assert.Contains("truncated", e.Message);

        File.WriteAllBytes(dir.File("float.idx"), Header(0x0D, 1));
        Assert.Contains("0x0d", Assert.Throws<SadgException>(() => Idx.Read(dir.File("float.idx"))).Message);

        Assert.Equal(SadgErrorCode.DataNotFound, Assert.Throws<SadgException>(() => Idx.Read(dir.File("none.idx"))).Code);

        File.WriteAllBytes(dir.File("images.idx"), Header(0x08, 2, 2, 2).Concat(new byte[8]).ToArray());
        File.WriteAllBytes(dir.File("labels.idx"), Header(0x08, 3).Concat(new byte[3]).ToArray());
        e = Assert.Throws<SadgException>(() => LabelledImages.FromIdx(dir.File("images.idx"), dir.File("labels.idx")));
        Assert.Contains("belongs to the images", e.Message);
    }

    [Fact]
    public void ReadsFashionMnist()
    {
        using var test = FashionMnist.Load(train: false);
        Assert.Equal(new long[] { 10000, 1, 28, 28 }, test.Images.shape);
        Assert.Equal(10, test.Labels.unique().Item1.shape[0]);
        Assert.InRange(test.Images.mean().item<float>(), 0.25f, 0.32f);
    }
}
