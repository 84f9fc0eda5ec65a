using Sadg.Tests.Support;

namespace Sadg.Tests;

/// <summary><see cref="AtomicFile"/>: what a reader finds after a write that finished and after one that failed.</summary>
public class AtomicFileTests
{
    [Fact]
    public void A_folder_written_whole_is_in_place_with_its_files_and_nothing_beside_it()
    {
        using var temp = new TempFolder();
        string target = temp.File("set");
        AtomicFile.WriteFolder(target, tmp =>
        {
            Assert.NotEqual(Path.GetFullPath(target), Path.GetFullPath(tmp));
            Assert.False(Directory.Exists(target), "the target appears only when the folder is complete");
            File.WriteAllText(Path.Combine(tmp, "a.txt"), "a");
        });
        Assert.Equal("a", File.ReadAllText(Path.Combine(target, "a.txt")));
        Assert.Equal([target], Directory.GetFileSystemEntries(temp.Path));
    }

    [Fact]
    public void A_folder_whose_writing_fails_or_is_cancelled_leaves_nothing()
    {
        using var temp = new TempFolder();
        string target = temp.File("set");
        Assert.Throws<OperationCanceledException>(() => AtomicFile.WriteFolder(target, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, "a.txt"), "a");
            throw new OperationCanceledException();
        }));
        var e = Assert.Throws<SadgException>(() => AtomicFile.WriteFolder(target, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, "a.txt"), "a");
            throw new IOException("disk full");
        }));
        Assert.Equal(SadgErrorCode.WriteFailed, e.Code);
        Assert.Contains("disk full", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(temp.Path));
    }
}
